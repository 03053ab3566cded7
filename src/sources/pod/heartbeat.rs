//! The ping and pong timing of a live PoD connection. A connection whose pong does not come in
//! time is silent: the session drops it, its sinks fall out of sync, and the archive fills what
//! it missed.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock;

/// The pings of an open connection: one every `ping_interval` (clock time); the connection is
/// silent when the pong of a ping is not back within half of that (at least a second).
pub(super) struct Heartbeat {
    every: Duration,
    /// How long a ping's pong may take.
    pub(super) pong_wait: Duration,
    /// When the next ping is sent.
    pub(super) next_ping: DateTime<Utc>,
    /// When the pong of the ping sent is due; `None` once it came.
    pub(super) pong_due: Option<DateTime<Utc>>,
}

impl Heartbeat {
    pub(super) fn new(clock: &clock::Clock, every: Duration) -> Heartbeat {
        Heartbeat {
            every,
            pong_wait: (every / 2).max(Duration::from_secs(1)),
            next_ping: clock.now() + chrono_d(every),
            pong_due: None,
        }
    }

    /// The next deadline: the pong due, else the next ping.
    pub(super) fn deadline(&self) -> DateTime<Utc> {
        self.pong_due.unwrap_or(self.next_ping)
    }

    /// The pong is overdue at `now`.
    pub(super) fn silent(&self, now: DateTime<Utc>) -> bool {
        self.pong_due.is_some_and(|due| now >= due)
    }

    /// The pong came.
    pub(super) fn ponged(&mut self) {
        self.pong_due = None;
    }

    /// A ping was sent at `now`.
    pub(super) fn pinged(&mut self, now: DateTime<Utc>) {
        self.pong_due = Some(now + chrono_d(self.pong_wait));
        self.next_ping = now + chrono_d(self.every);
    }
}

fn chrono_d(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}
