//! What can go wrong with a TAP SIEM response body.
//!
//! Every variant says where it happened: a byte offset from the start of the body, or an event's
//! kind and index within its array. What the poller does about it is decided in one place,
//! [`crate::api::ApiError::disposition`]: a body cut short and a body garbled on the way
//! (a proxy's error page spliced into the stream) look alike from here, and both are asked for
//! again with backoff.

use crate::event::EventKind;

/// What went wrong with a response body. Offsets count bytes from the start of the body; event
/// indexes count from 0 within their array.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("response body is empty")]
    Empty,
    #[error("response body is not a JSON object: starts with \"{head}\"")]
    NotObject { head: String },
    #[error("response body ended inside event {index} of {kind} (byte {offset})")]
    EndedInsideEvent {
        kind: EventKind,
        index: u64,
        offset: u64,
    },
    #[error("response body ended before the response object was closed (byte {offset})")]
    EndedEarly { offset: u64 },
    #[error("event {index} of {kind} is not a JSON object")]
    EventNotObject { kind: EventKind, index: u64 },
    #[error("event {index} of {kind} is not valid JSON: {detail}")]
    EventInvalid {
        kind: EventKind,
        index: u64,
        /// What is wrong and where: `control character (\u0000-\u001F) in a string at byte 7 of
        /// the event`.
        detail: String,
    },
    #[error("event {index} of {kind} is not valid UTF-8 (byte {offset} of the event)")]
    EventNotUtf8 {
        kind: EventKind,
        index: u64,
        offset: usize,
    },
    #[error("event {index} of {kind} is {len} bytes, over the {limit}-byte limit")]
    EventTooLarge {
        kind: EventKind,
        index: u64,
        len: u64,
        limit: usize,
    },
    #[error("{kind} is neither an array nor null (byte {offset})")]
    NotArray { kind: EventKind, offset: u64 },
    #[error("trailing data after the response object at byte {offset}")]
    TrailingData { offset: u64 },
    #[error("response nesting deeper than {limit} (byte {offset})")]
    TooDeep { limit: usize, offset: u64 },
    #[error(
        "invalid JSON in the response body at byte {offset}: found {found}, expected {expected}"
    )]
    Unexpected {
        found: String,
        expected: &'static str,
        offset: u64,
    },
    #[error("events not taken from the batch builder exceed 4 GiB")]
    BuilderFull,
    #[error("the splitter already failed on this response")]
    AlreadyFailed,
}

/// A byte that the grammar does not allow where it stands.
pub(super) fn unexpected(b: u8, expected: &'static str, offset: u64) -> SplitError {
    SplitError::Unexpected {
        found: format!("'{}'", b.escape_ascii()),
        expected,
        offset,
    }
}
