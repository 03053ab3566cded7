//! Archive catch-ups: the spans the sinks that fell out of sync lack, fetched in archive mode
//! (`sinceTime`/`toTime`), one hour window and one session at a time, each under the session
//! lock of its token and type (invariant 3). A position older than `archive_horizon` is moved
//! to the horizon first and the skipped span reported (log, status `gap_seconds`,
//! `tapfwd_gap_seconds_total`): the archive cannot serve it.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::chunk::Pending;
use super::lanes::needs;
use super::{floor_hour, PodStream, CLOSE_TIMEOUT};
use crate::api::pod::{connect, CONNECT_TIMEOUT};
use crate::api::{ApiError, Disposition};
use crate::clock;
use crate::engine::Span;
use crate::sources::Context;
use crate::status::TenantState;
use crate::store::StoreError;

/// Why an archive catch-up stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum CatchUpError {
    #[error("archive session: {0}")]
    Connect(ApiError),
    #[error("archive session lost: {0}")]
    Lost(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cancelled")]
    Cancelled,
}

impl CatchUpError {
    /// What the stream does about it: a session the service refused says why; a lost session
    /// or a failing store is retried.
    pub(super) fn disposition(&self) -> Disposition {
        match self {
            CatchUpError::Connect(e) => e.disposition(),
            // Cancelled ends the stream before any wait; it is never asked.
            CatchUpError::Lost(_) | CatchUpError::Store(_) | CatchUpError::Cancelled => {
                Disposition::Transient
            }
        }
    }
}

impl PodStream {
    /// Fetches from the archive, hour window by hour window, what the sinks that are out of sync
    /// lack and the archive serves; clamps positions older than the horizon.
    pub(super) async fn catch_up(
        &mut self,
        ctx: &Context,
        cancel: &CancellationToken,
    ) -> Result<(), CatchUpError> {
        let now = ctx.clock.now().timestamp();
        let horizon = self.clamp_to_horizon(ctx, now)?;
        let mut needs = needs(
            &self.lanes,
            self.config.archive_lag,
            self.disorder(),
            &self.streams,
            now,
            false,
        );
        // The margin for frames out of order before a position at the horizon is past it too.
        for need in &mut needs {
            need.1 = need.1.max(horizon);
        }
        if needs.is_empty() {
            return Ok(());
        }
        self.stats.catchups += 1;
        self.stats.state = TenantState::CatchingUp;
        ctx.metrics
            .add_stream_catchup(&self.tenant, self.kind.as_str());
        let start = floor_hour(needs.iter().map(|n| n.1).min().unwrap_or(now));
        let end = needs.iter().map(|n| n.2).max().unwrap_or(now);
        tracing::info!(from = %clock::rfc3339(start), to = %clock::rfc3339(end), sinks = needs.len(), "archive catch-up");
        self.publish(ctx);
        let disorder = self.disorder();
        let mut failed: Vec<usize> = Vec::new();
        let mut h = start;
        while h < end {
            if cancel.is_cancelled() {
                return Err(CatchUpError::Cancelled);
            }
            let h2 = (floor_hour(h) + 3600).min(end);
            let targets: Vec<usize> = needs
                .iter()
                .filter(|(i, from, to)| *from < h2 && *to > h && !failed.contains(i))
                .map(|n| n.0)
                .collect();
            if !targets.is_empty() {
                let floor = needs
                    .iter()
                    .filter(|n| targets.contains(&n.0))
                    .map(|n| n.1)
                    .min()
                    .unwrap_or(h);
                let alive = self
                    .archive_window(ctx, cancel, targets.clone(), h, h2, floor)
                    .await?;
                for i in targets {
                    if !alive.contains(&i) {
                        failed.push(i);
                        continue;
                    }
                    let lane = &mut self.lanes[i];
                    if lane.archive_to(disorder).is_some_and(|to| h2 >= to) {
                        lane.synced = true;
                        lane.live_from = None;
                        // The archive has every frame before `h2`: that is position `h2 +
                        // disorder` (see the lanes module).
                        let to = lane.live_latest.unwrap_or(h2 + disorder).max(h2 + disorder);
                        self.streams.advance(i, to, ctx.engine())?;
                    }
                }
                self.publish(ctx);
            }
            h = h2;
        }
        ctx.store.flush().await?;
        self.attempts = 0;
        Ok(())
    }

    /// Moves every position older than the archive horizon to the horizon, and reports the span
    /// each such sink skips (the archive cannot serve it); returns the horizon.
    fn clamp_to_horizon(&mut self, ctx: &Context, now: i64) -> Result<i64, StoreError> {
        let horizon = now - self.config.archive_horizon.as_secs() as i64;
        let gaps = self.streams.clamp(ctx.engine(), |c| {
            if c != 0 && c < horizon {
                (horizon, Some((c, horizon)))
            } else {
                (c, None)
            }
        })?;
        for (sink, from, to) in gaps {
            tracing::warn!(sink = %sink, from = %clock::rfc3339(from), to = %clock::rfc3339(to), "position older than the archive horizon: this span cannot be fetched and is skipped");
            self.stats.last_error = Some(format!(
                "sink {sink}: {} to {} is past the archive horizon and was skipped",
                clock::rfc3339(from),
                clock::rfc3339(to)
            ));
        }
        Ok(horizon)
    }

    /// One archive session for `[since, to]`, delivered to `targets` from `floor` (the earliest
    /// point where their catch-ups start) on; returns the targets that took all of it. Their
    /// position is now `to + max_disorder`: they have every frame before `to`, and a position
    /// promises the frames up to `max_disorder` before it (see the lanes module).
    async fn archive_window(
        &mut self,
        ctx: &Context,
        cancel: &CancellationToken,
        targets: Vec<usize>,
        since: i64,
        to: i64,
        floor: i64,
    ) -> Result<Vec<usize>, CatchUpError> {
        let _session = self.lock.clone().lock_owned().await;
        let url = self.stream_url(Some((since, to)));
        let mut ws = connect(&url, &self.token)
            .await
            .map_err(CatchUpError::Connect)?;
        let mut delivery = self.streams.begin(
            targets,
            Span {
                start: floor_hour(since),
                end: to + self.disorder(),
            },
            &ctx.store,
        )?;
        let mut pending = Pending::default();
        let kind = self.kind;
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = ws.close(None).await;
                    return Err(CatchUpError::Cancelled);
                }
                msg = tokio::time::timeout(CONNECT_TIMEOUT * 4, ws.next()) => msg,
            };
            match msg {
                Ok(Some(Ok(Message::Text(t)))) => pending.push_from(kind, t.as_bytes(), floor),
                Ok(Some(Ok(Message::Binary(b)))) => pending.push_from(kind, &b, floor),
                Ok(Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(CatchUpError::Lost(e.to_string())),
                Ok(None) => {
                    return Err(CatchUpError::Lost(
                        "connection closed before the end of the archive".into(),
                    ))
                }
                Err(_) => return Err(CatchUpError::Lost("no frame for two minutes".into())),
            }
            if pending.full() {
                let (batch, _, _) = pending.take();
                self.stats.frames += batch.len() as u64;
                delivery.send(&batch, ctx.engine()).await?;
                if !delivery.any_alive() {
                    // Every target failed: the rest of the window is not worth reading.
                    let _ = ws.close(None).await;
                    break;
                }
            }
        }
        // Let the close handshake finish, so the session is gone before the next one.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        drop(ws);
        if !pending.events.is_empty() && delivery.any_alive() {
            let (batch, _, _) = pending.take();
            self.stats.frames += batch.len() as u64;
            delivery.send(&batch, ctx.engine()).await?;
        }
        let alive = delivery.alive_streams();
        delivery.finish(ctx.engine()).await?;
        Ok(alive)
    }
}
