//! The second half of every HTTP sink's delivery: the request bodies a sink encoded and packed,
//! each gzip-compressed when its options say so, then posted with [`with_retries`], in order.
//!
//! Invariant 1: [`post_all`] returns only when every body was accepted, or fails at the first body
//! that could not be, so the sink commits the batch (once, after this returns) only when the
//! destination has all of it. A batch that fails after some of its bodies were accepted is sent
//! again whole by the poller: at least once, never lost.

use std::future::Future;

use bytes::Bytes;

use super::{gzip, with_retries, HttpOptions, Step};
use crate::sinks::SinkError;

/// Posts each `(key, body)` with `post(key, body)`, retried as `options.retry` says, and returns
/// what each accepted post produced, in order. `key` is what the post needs besides the body
/// (Sentinel's stream; `()` for the others).
pub async fn post_all<K, T, F, Fut>(
    sink: &str,
    options: &HttpOptions<'_>,
    bodies: impl IntoIterator<Item = (K, Vec<u8>)>,
    mut post: F,
) -> Result<Vec<T>, SinkError>
where
    K: Copy,
    F: FnMut(K, Bytes) -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let mut accepted = Vec::new();
    for (key, body) in bodies {
        let bytes = Bytes::from(if options.gzip { gzip(&body) } else { body });
        accepted.push(with_retries(sink, options.retry, || post(key, bytes.clone())).await?);
    }
    Ok(accepted)
}
