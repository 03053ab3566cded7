//! The HTTP sinks against local servers that speak each destination's protocol
//! (tests/support/fakes.rs): request format byte for byte, authentication, batching limits,
//! retries with and without `Retry-After`, permanent rejections that hold the checkpoint, Splunk
//! indexer acknowledgement and the Sentinel token lifecycle. Every sink is driven through the
//! `Sink` trait with a commit callback that counts its calls.
//!
//! One test binary, a module per sink ([`splunk_hec`], [`logscale`], [`sentinel`], [`http`] for
//! the generic one), [`config`] for the config and build checks every HTTP sink shares,
//! [`redirects`] for the one rule all of them keep, and [`end_to_end`], which runs the real `App`
//! against the built-in simulator with one tenant per destination (and one whose destination
//! rejects it). The batches, the sink driver and the fake servers each test starts are in
//! [`common`].

#[path = "../support/mod.rs"]
mod support;

mod common;
mod config;
mod end_to_end;
mod http;
mod logscale;
mod redirects;
mod sentinel;
mod splunk_hec;
