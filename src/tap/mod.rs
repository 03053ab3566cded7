//! The Proofpoint TAP SIEM API: the HTTP client, window planning, the streaming splitter and the
//! raw event with its identity.

pub mod client;
pub mod event;
pub mod split;
pub mod window;

pub use event::{Batch, EventKey, EventKind, EventMeta};
