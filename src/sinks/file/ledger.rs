//! The file sink's group commit: deliveries write one after another, and the writes that are
//! complete when a sync starts share that one `fdatasync`; each delivery commits (its dedupe keys
//! and the length it reached, in the store) in the order of its bytes, once a sync covers them.
//!
//! A delivery takes a *ticket* when its write is complete; tickets commit in their order (their
//! *turn*), so the file's committed length only grows and every byte before it belongs to a
//! committed batch. On its turn a delivery syncs the file unless an earlier sync already covered
//! its bytes. A failure on a turn (the sync, the file's identity, the commit) or a delivery
//! dropped before its turn ends the *epoch*: every later ticket of that epoch fails on its turn
//! without committing (its bytes follow bytes that were not committed), and the next write starts
//! again at the committed length, cutting what the failed epoch wrote after it (invariant 1:
//! nothing is committed before it is durable; invariant 2: nothing committed is written twice).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

#[derive(Default)]
pub(super) struct Ledger {
    state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    /// The next ticket's number.
    next_ticket: u64,
    /// The ticket whose turn it is.
    turn: u64,
    /// Tickets whose delivery was dropped before its turn, with their epoch: their turn fails
    /// that epoch, if it still runs.
    abandoned: BTreeMap<u64, u64>,
    /// Deliveries waiting for their turn.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
    /// Bumped by every failure and every reopen of the file.
    pub(super) epoch: u64,
    /// Where the next write starts: the end of every complete write of this epoch.
    pub(super) written: u64,
    /// Every byte before this one is durable (`fdatasync`ed) in the file.
    pub(super) synced: u64,
    /// Every byte before this one belongs to a committed batch.
    pub(super) committed: u64,
    /// Syncs made (a delivery whose bytes an earlier sync covered makes none).
    pub(super) syncs: u64,
}

impl State {
    /// Ends the epoch: what was written past the committed length is void.
    fn fail(&mut self) {
        self.epoch += 1;
        self.written = self.committed;
        self.synced = self.committed;
    }

    /// Gives the turn to the next ticket, failing the epoch at each abandoned one on the way.
    fn advance(&mut self) {
        self.turn += 1;
        while let Some(epoch) = self.abandoned.remove(&self.turn) {
            if epoch == self.epoch {
                self.fail();
            }
            self.turn += 1;
        }
        if let Some(tx) = self.waiting.remove(&self.turn) {
            let _ = tx.send(());
        }
    }
}

impl Ledger {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A file of `len` bytes (opened, or opened again): its bytes are committed and durable.
    pub(super) fn reset(&self, len: u64) {
        let mut s = self.lock();
        s.epoch += 1;
        s.written = len;
        s.synced = len;
        s.committed = len;
    }

    /// A write of epoch `epoch` that reached `end` is complete: its ticket, unless the epoch
    /// ended meanwhile (the write is then void).
    pub(super) fn ticket(&self, epoch: u64, end: u64) -> Option<Ticket<'_>> {
        let mut s = self.lock();
        if s.epoch != epoch {
            return None;
        }
        s.written = end;
        let number = s.next_ticket;
        s.next_ticket += 1;
        Some(Ticket {
            ledger: self,
            number,
            epoch,
            held: false,
            done: false,
        })
    }

    /// The syncs made so far.
    pub(super) fn syncs(&self) -> u64 {
        self.lock().syncs
    }
}

/// A complete write waiting for (or holding) its turn to commit. Dropped before
/// [`Ticket::committed`] or [`Ticket::failed`], it fails its epoch on its turn.
pub(super) struct Ticket<'a> {
    ledger: &'a Ledger,
    number: u64,
    pub(super) epoch: u64,
    held: bool,
    done: bool,
}

impl Ticket<'_> {
    /// Waits for this ticket's turn: every earlier ticket has committed or failed.
    pub(super) async fn turn(&mut self) {
        loop {
            let rx = {
                let mut s = self.ledger.lock();
                if s.turn == self.number {
                    self.held = true;
                    return;
                }
                let (tx, rx) = oneshot::channel();
                s.waiting.insert(self.number, tx);
                rx
            };
            let _ = rx.await;
        }
    }

    /// The ledger's state, on this ticket's turn.
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.ledger.lock()
    }

    /// This ticket's bytes, up to `end`, are committed: the next ticket's turn.
    pub(super) fn committed(mut self, end: u64) {
        let mut s = self.ledger.lock();
        s.committed = end;
        s.advance();
        self.done = true;
    }

    /// This ticket failed on its turn. `own`: the failure was its own (its sync or its commit),
    /// which ends the epoch; otherwise the epoch had already ended.
    pub(super) fn failed(mut self, own: bool) {
        let mut s = self.ledger.lock();
        if own && s.epoch == self.epoch {
            s.fail();
        }
        s.advance();
        self.done = true;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.ledger.lock();
        s.waiting.remove(&self.number);
        if self.held || s.turn == self.number {
            if s.epoch == self.epoch {
                s.fail();
            }
            s.advance();
        } else {
            s.abandoned.insert(self.number, self.epoch);
        }
    }
}

#[cfg(test)]
impl Ledger {
    /// Takes a ticket for no bytes at the end of what is written: while it is held (from its
    /// turn until it commits), the deliveries after it write but none commits.
    pub(super) fn hold(&self) -> Ticket<'_> {
        let (epoch, written) = {
            let s = self.lock();
            (s.epoch, s.written)
        };
        self.ticket(epoch, written).expect("the epoch did not end")
    }

    /// Tickets handed out so far.
    pub(super) fn tickets(&self) -> u64 {
        self.lock().next_ticket
    }
}
