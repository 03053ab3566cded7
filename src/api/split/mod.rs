//! Splits a TAP SIEM JSON response into raw events while it streams in (invariant 5).
//!
//! `GET /v2/siem/all?format=json` answers with one object holding `queryEndTime` and the four event
//! arrays (`messagesBlocked`, `messagesDelivered`, `clicksBlocked`, `clicksPermitted`). A busy hour
//! can be hundreds of megabytes, so the body is never held whole: the daemon feeds each chunk as it
//! arrives to a [`Splitter`], which appends the bytes of every complete event to a [`BatchBuilder`]
//! and notes its kind, identity key and time. The daemon takes the complete events as a [`Batch`]
//! whenever it likes; the bytes of an event still in progress stay behind for the next chunk.
//! Memory is bounded by the event in progress (at most [`SplitLimits::max_event_bytes`]; past
//! that its bytes are only counted, for the error) and whatever the caller has not taken.
//!
//! Outside the events the splitter is a small validating push parser: every value under a key it
//! does not know is checked for structure and skipped. Inside an event a faster validating scan
//! (`scan`) finds where the element ends, hashes its bytes as they come and notes where its time
//! fields lie: one pass over each byte, then a UTF-8 check of the whole element.
//!
//! Invariant 5, "raw in, raw out": the bytes of an event are forwarded exactly as the API sent
//! them, never re-serialized, and its [`EventKey`] is the hash of those bytes. The one exception is
//! an element that spans several lines outside its strings (pretty-printed output): its
//! insignificant whitespace is removed in place, string contents untouched. This is needed because
//! line-oriented sinks (file, syslog, HTTP NDJSON) frame one event per line, and a raw newline
//! would split an event in two there. It changes no value, and it is deterministic, so the same
//! event sent again in the same layout gets the same bytes and the same key. Elements without a
//! line break outside strings are kept byte for byte, spaces included.
//!
//! The module is cut along those lines: this file holds the public types and the push parser
//! outside events; `scan` validates an event element and completes it; `times` reads an event's
//! time fields; `error` says what can go wrong.

mod error;
#[cfg(test)]
mod oracle;
mod scan;
mod times;

use bytes::BytesMut;

use crate::event::{Batch, EventKind, EventMeta};

use error::unexpected;
pub use error::SplitError;
use scan::{EventScan, Num};

/// Bounds that keep a hostile or broken response from exhausting memory or the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitLimits {
    /// Largest event accepted, in bytes as sent (before any newline compaction). Default 16 MiB.
    pub max_event_bytes: usize,
    /// Deepest nesting of arrays and objects accepted anywhere in the response, counting the
    /// top-level object as 1. Default 64.
    pub max_depth: usize,
}

/// The default for [`SplitLimits::max_event_bytes`]: 16 MiB.
pub const fn default_max_event_bytes() -> usize {
    16 * 1024 * 1024
}

/// The default for [`SplitLimits::max_depth`]: 64.
pub const fn default_max_depth() -> usize {
    64
}

impl Default for SplitLimits {
    fn default() -> Self {
        SplitLimits {
            max_event_bytes: default_max_event_bytes(),
            max_depth: default_max_depth(),
        }
    }
}

/// What a whole, valid response held besides its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitSummary {
    /// The `queryEndTime` string of the response, unescaped; `None` when absent or not a string.
    pub query_end_time: Option<String>,
    /// Events emitted for this response.
    pub events: u64,
    /// Top-level arrays the splitter does not know (`MessagesDelivered`, `messagesQuarantined`),
    /// by name (unescaped, at most 64 characters) with their element counts; at most
    /// [`MAX_UNKNOWN_ARRAYS`] of them. Their elements are skipped, not forwarded.
    pub unknown_arrays: Vec<(String, u64)>,
    /// Events whose `customerEid` is present but not a customer id
    /// ([`crate::event::is_customer_id`]): a number, a string over 64 bytes or holding a space or
    /// a control character. They are forwarded as sent, without a customer.
    pub invalid_customers: u64,
}

/// Most unknown top-level arrays a [`SplitSummary`] names.
pub const MAX_UNKNOWN_ARRAYS: usize = 16;

/// Complete events cut from a response, back to back in one buffer, waiting to be taken.
///
/// `buf[..complete]` holds complete events; `buf[complete..]` holds the bytes of the one event
/// still in progress, if any. The splitter appends; the daemon [`take`](Self::take)s.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    /// Complete events, then the partial one.
    buf: BytesMut,
    /// One entry per complete event, `start` relative to `buf`.
    events: Vec<EventMeta>,
    /// Length of the complete-event prefix of `buf`; grows when an event completes, drops to 0 on take.
    complete: usize,
    /// The last `customerEid` seen, shared by the events that carry the same one (a partner's
    /// response is mostly runs of one client's events), so most events cost no allocation.
    last_customer: Option<std::sync::Arc<str>>,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Complete events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes of the complete events held.
    pub fn raw_bytes(&self) -> usize {
        self.complete
    }

    /// Bytes held, the event in progress included.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the current buffer holds without growing.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Hands over the complete events without copying them; the bytes of an event still in
    /// progress stay here for the next feed.
    pub fn take(&mut self) -> Batch {
        let buf = self.buf.split_to(self.complete).freeze();
        // The event in progress leaves the buffer handed on, which is then freed with the batch
        // (and its budget share returned) instead of when the next buffer is paid for.
        self.buf = BytesMut::from(&self.buf[..]);
        self.complete = 0;
        Batch {
            buf,
            events: std::mem::take(&mut self.events),
            enrichment: None,
            snapshot: None,
        }
    }

    /// Moves what is held into a new buffer with room for exactly `bytes` more (see the response
    /// reader in `api::siem`, which pays for every buffer from its budget before allocating it).
    /// Not `BytesMut::reserve`: once the batches cut from the old buffer are gone, that grows
    /// the old buffer in place, doubling it, past what was paid for.
    pub fn reserve(&mut self, bytes: usize) {
        let mut buf = BytesMut::with_capacity(self.buf.len().saturating_add(bytes));
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
    }

    /// Forgets the bytes of an unfinished event.
    fn drop_partial(&mut self) {
        self.buf.truncate(self.complete);
    }
}

/// The shared text of customer id `id`: `last` when it is the same, else a new one kept in `last`.
fn intern_customer(last: &mut Option<std::sync::Arc<str>>, id: &str) -> std::sync::Arc<str> {
    match last {
        Some(l) if &**l == id => l.clone(),
        _ => {
            let new: std::sync::Arc<str> = id.into();
            *last = Some(new.clone());
            new
        }
    }
}

/// Where the push parser is, outside events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first byte that is not whitespace.
    Start,
    /// The body does not open with `{`: collecting its first bytes for the error.
    NotObject,
    /// A value must come (after `:`, or after `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ValueOrClose,
    /// Just after `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the close of the enclosing container.
    CommaOrClose,
    /// Inside a string that is not part of an event.
    Str {
        escape: Escape,
        role: StrRole,
        utf8: Utf8,
    },
    /// Inside a number that is not part of an event.
    Number(Num),
    /// Inside `true`, `false` or `null`; `pos` bytes of `lit` matched.
    Literal { lit: &'static [u8], pos: u8 },
    /// Inside an event element: see [`EventScan`].
    Event,
    /// The top-level object is closed: only whitespace may follow.
    Done,
    /// An error was returned; the splitter is unusable.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After a backslash.
    Backslash,
    /// Inside `\u`, this many hex digits still to come.
    Hex(u8),
}

/// Where a string outside events is in a UTF-8 sequence: how many continuation bytes are still
/// due, and the range the next one must fall in (RFC 3629's table, so no overlong form, no
/// surrogate, nothing above U+10FFFF). Events are checked as UTF-8 whole when they complete;
/// this checks the rest of the body, whose only non-ASCII bytes can be in strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Utf8 {
    due: u8,
    lo: u8,
    hi: u8,
}

impl Utf8 {
    /// Between characters.
    const START: Utf8 = Utf8 {
        due: 0,
        lo: 0x80,
        hi: 0xbf,
    };

    /// The state after `b`, or `None` when `b` cannot come next in UTF-8 text.
    fn next(self, b: u8) -> Option<Utf8> {
        let seq = |due, lo, hi| Some(Utf8 { due, lo, hi });
        if self.due > 0 {
            return if (self.lo..=self.hi).contains(&b) {
                seq(self.due - 1, 0x80, 0xbf)
            } else {
                None
            };
        }
        match b {
            0x00..=0x7f => Some(Utf8::START),
            0xc2..=0xdf => seq(1, 0x80, 0xbf),
            0xe0 => seq(2, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => seq(2, 0x80, 0xbf),
            0xed => seq(2, 0x80, 0x9f),
            0xf0 => seq(3, 0x90, 0xbf),
            0xf1..=0xf3 => seq(3, 0x80, 0xbf),
            0xf4 => seq(3, 0x80, 0x8f),
            _ => None,
        }
    }
}

/// What a string outside events is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrRole {
    /// A key of the top-level object: captured to classify the value.
    TopKey,
    /// Any other key.
    Key,
    /// The `queryEndTime` value: captured.
    QueryEndTime,
    /// Any other value.
    Value,
}

/// What a level of nesting outside events is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// The response object.
    Top,
    /// The array of one event kind.
    Events,
    /// An object inside a skipped value.
    Object,
    /// An array inside a skipped value.
    Array,
}

impl Frame {
    fn is_object(self) -> bool {
        matches!(self, Frame::Top | Frame::Object)
    }
}

/// What the last key of the top-level object names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopKey {
    Events(EventKind),
    QueryEndTime,
    Other,
}

/// Longest top-level key captured, quotes included; longer keys are none of the known ones even
/// with every character escaped (`\uXXXX`).
const MAX_KEY: usize = 128;
/// Longest `queryEndTime` captured, quotes included.
const MAX_QUERY_END_TIME: usize = 256;
/// Bytes of a non-object body shown in the error.
const HEAD_BYTES: usize = 40;

/// Cuts one response body into events; see the module documentation. One splitter per response.
#[derive(Debug)]
pub struct Splitter {
    limits: SplitLimits,
    state: State,
    /// Open containers outside events, outermost first.
    stack: Vec<Frame>,
    /// Body bytes consumed before the current chunk.
    pos: u64,
    /// The top-level key being read or just read.
    key: Vec<u8>,
    /// What `key` names, once read.
    top_key: TopKey,
    /// The `queryEndTime` string as sent, quotes and escapes included.
    query_end_time: Vec<u8>,
    /// The first bytes of a body that is not an object.
    head: Vec<u8>,
    /// The kind of the event array being read, and the index of its current element.
    kind: EventKind,
    index: u64,
    /// The element in progress, while `state` is `Event`.
    scan: EventScan,
    /// Events emitted so far.
    events: u64,
    /// Unknown top-level arrays seen so far, and whether the one open now is being counted.
    unknown_arrays: Vec<(String, u64)>,
    counting_unknown: bool,
    /// Events emitted whose `customerEid` is not a customer id.
    invalid_customers: u64,
    /// The element in progress: where the fields read from it lie, and its hash so far.
    fields: Vec<times::FieldSpan>,
    hasher: blake3::Hasher,
}

impl Splitter {
    pub fn new(limits: SplitLimits) -> Self {
        Splitter {
            limits,
            state: State::Start,
            stack: Vec::new(),
            pos: 0,
            key: Vec::new(),
            top_key: TopKey::Other,
            query_end_time: Vec::new(),
            head: Vec::new(),
            kind: EventKind::MessagesBlocked,
            index: 0,
            scan: EventScan::default(),
            events: 0,
            unknown_arrays: Vec::new(),
            counting_unknown: false,
            invalid_customers: 0,
            fields: Vec::new(),
            hasher: blake3::Hasher::new(),
        }
    }

    /// Consumes the next chunk of the body, appending every event it completes to `out`.
    ///
    /// After an error the splitter refuses further input, and `out` keeps only complete events.
    pub fn feed(&mut self, chunk: &[u8], out: &mut BatchBuilder) -> Result<(), SplitError> {
        if self.state == State::Failed {
            return Err(SplitError::AlreadyFailed);
        }
        match self.feed_chunk(chunk, out) {
            Ok(()) => {
                self.pos += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.state = State::Failed;
                out.drop_partial();
                Err(e)
            }
        }
    }

    /// Ends the body: succeeds only if the response object was closed and only whitespace
    /// followed.
    pub fn finish(&mut self) -> Result<SplitSummary, SplitError> {
        let offset = self.pos;
        let result = match self.state {
            State::Done => {
                return Ok(SplitSummary {
                    query_end_time: self.query_end_time(),
                    events: self.events,
                    unknown_arrays: std::mem::take(&mut self.unknown_arrays),
                    invalid_customers: self.invalid_customers,
                })
            }
            State::Failed => Err(SplitError::AlreadyFailed),
            State::Start => Err(SplitError::Empty),
            State::NotObject => Err(self.not_object()),
            State::Event => Err(SplitError::EndedInsideEvent {
                kind: self.kind,
                index: self.index,
                offset,
            }),
            _ => Err(SplitError::EndedEarly { offset }),
        };
        self.state = State::Failed;
        result
    }

    fn query_end_time(&self) -> Option<String> {
        if self.query_end_time.is_empty() {
            return None;
        }
        serde_json::from_slice(&self.query_end_time).ok()
    }

    fn not_object(&self) -> SplitError {
        let text = String::from_utf8_lossy(&self.head);
        SplitError::NotObject {
            head: text
                .chars()
                .take(HEAD_BYTES)
                .collect::<String>()
                .escape_debug()
                .to_string(),
        }
    }

    fn feed_chunk(&mut self, chunk: &[u8], out: &mut BatchBuilder) -> Result<(), SplitError> {
        let mut i = 0;
        while i < chunk.len() {
            if self.state == State::Event {
                i = self.scan_event(chunk, i, out)?;
            } else if self.step(chunk[i], self.pos + i as u64, out)? {
                i += 1;
            }
        }
        Ok(())
    }

    /// Handles one byte outside events. Returns false when the byte must be handled again in the
    /// new state (it ended a number, or it opens an event).
    fn step(&mut self, b: u8, at: u64, out: &mut BatchBuilder) -> Result<bool, SplitError> {
        match self.state {
            State::Start => match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'{' => {
                    self.push(Frame::Top, at)?;
                    self.state = State::KeyOrClose;
                }
                _ => {
                    self.state = State::NotObject;
                    self.head.push(b);
                }
            },
            State::NotObject => {
                self.head.push(b);
                if self.head.len() >= HEAD_BYTES {
                    return Err(self.not_object());
                }
            }
            State::Value | State::ValueOrClose => match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b']' if self.state == State::ValueOrClose => self.close(b, at)?,
                _ => return self.begin_value(b, at, out),
            },
            State::KeyOrClose | State::Key => match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    let role = if self.stack.len() == 1 {
                        self.key.clear();
                        self.key.push(b);
                        StrRole::TopKey
                    } else {
                        StrRole::Key
                    };
                    self.state = State::Str {
                        escape: Escape::None,
                        role,
                        utf8: Utf8::START,
                    };
                }
                b'}' if self.state == State::KeyOrClose => self.close(b, at)?,
                _ => return Err(unexpected(b, "a string key", at)),
            },
            State::Colon => match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b':' => self.state = State::Value,
                _ => return Err(unexpected(b, "':'", at)),
            },
            State::CommaOrClose => match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b',' => {
                    let top = self.stack.last().copied().unwrap_or(Frame::Top);
                    if top.is_object() {
                        self.state = State::Key;
                    } else {
                        if top == Frame::Events {
                            self.index += 1;
                        }
                        self.state = State::Value;
                    }
                }
                b'}' | b']' => self.close(b, at)?,
                _ => return Err(unexpected(b, "',' or a closing bracket", at)),
            },
            State::Str { escape, role, utf8 } => self.string_byte(b, escape, role, utf8, at)?,
            State::Number(num) => match num.next(b) {
                Some(next) => self.state = State::Number(next),
                None if num.is_complete() => {
                    self.state = State::CommaOrClose;
                    return Ok(false);
                }
                None => return Err(unexpected(b, "a digit", at)),
            },
            State::Literal { lit, pos } => {
                let pos = usize::from(pos);
                if lit.get(pos) != Some(&b) {
                    return Err(unexpected(b, "true, false or null", at));
                }
                if pos + 1 == lit.len() {
                    self.state = State::CommaOrClose;
                } else {
                    self.state = State::Literal {
                        lit,
                        pos: pos as u8 + 1,
                    };
                }
            }
            State::Done => match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                _ => return Err(SplitError::TrailingData { offset: at }),
            },
            // Handled by `feed_chunk` and `feed`.
            State::Event | State::Failed => {}
        }
        Ok(true)
    }

    /// The first byte `b` of a value outside events.
    fn begin_value(&mut self, b: u8, at: u64, out: &mut BatchBuilder) -> Result<bool, SplitError> {
        let frame = self.stack.last().copied().unwrap_or(Frame::Top);
        if frame == Frame::Events {
            if b != b'{' {
                return Err(SplitError::EventNotObject {
                    kind: self.kind,
                    index: self.index,
                });
            }
            out.drop_partial();
            self.scan = EventScan::at_body_offset(at);
            self.fields.clear();
            self.hasher.reset();
            self.state = State::Event;
            return Ok(false);
        }
        if frame == Frame::Top {
            match self.top_key {
                TopKey::Events(kind) => match b {
                    b'[' => {
                        self.push(Frame::Events, at)?;
                        self.kind = kind;
                        self.index = 0;
                        self.state = State::ValueOrClose;
                        return Ok(true);
                    }
                    b'n' => {}
                    _ => return Err(SplitError::NotArray { kind, offset: at }),
                },
                TopKey::QueryEndTime if b == b'"' => {
                    self.query_end_time.clear();
                    self.query_end_time.push(b);
                    self.state = State::Str {
                        escape: Escape::None,
                        role: StrRole::QueryEndTime,
                        utf8: Utf8::START,
                    };
                    return Ok(true);
                }
                TopKey::Other if b == b'[' => self.begin_unknown_array(),
                _ => {}
            }
        }
        if frame == Frame::Array && self.stack.len() == 2 && self.counting_unknown {
            // An element of an unknown top-level array: counted, then skipped like any value.
            if let Some(last) = self.unknown_arrays.last_mut() {
                last.1 += 1;
            }
        }
        match b {
            b'{' => {
                self.push(Frame::Object, at)?;
                self.state = State::KeyOrClose;
            }
            b'[' => {
                self.push(Frame::Array, at)?;
                self.state = State::ValueOrClose;
            }
            b'"' => {
                self.state = State::Str {
                    escape: Escape::None,
                    role: StrRole::Value,
                    utf8: Utf8::START,
                }
            }
            b'-' => self.state = State::Number(Num::Minus),
            b'0' => self.state = State::Number(Num::Zero),
            b'1'..=b'9' => self.state = State::Number(Num::Int),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => return Err(unexpected(b, "a JSON value", at)),
        }
        Ok(true)
    }

    /// The top-level key just read opens an array that is not an event kind: remember its name.
    fn begin_unknown_array(&mut self) {
        self.counting_unknown = self.unknown_arrays.len() < MAX_UNKNOWN_ARRAYS;
        if !self.counting_unknown {
            return;
        }
        let name = serde_json::from_slice::<String>(&self.key)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.key).into_owned());
        let name: String = name
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(64)
            .collect();
        self.unknown_arrays.push((name, 0));
    }

    fn literal(&mut self, lit: &'static [u8]) {
        self.state = State::Literal { lit, pos: 1 };
    }

    fn push(&mut self, frame: Frame, at: u64) -> Result<(), SplitError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(SplitError::TooDeep {
                limit: self.limits.max_depth,
                offset: at,
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    /// A closing bracket `b` outside events.
    fn close(&mut self, b: u8, at: u64) -> Result<(), SplitError> {
        let Some(&frame) = self.stack.last() else {
            return Err(unexpected(b, "the end of the body", at));
        };
        match (frame.is_object(), b) {
            (true, b'}') | (false, b']') => {}
            (true, _) => return Err(unexpected(b, "',' or '}'", at)),
            (false, _) => return Err(unexpected(b, "',' or ']'", at)),
        }
        self.stack.pop();
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::CommaOrClose
        };
        Ok(())
    }

    /// One byte of a string outside events.
    fn string_byte(
        &mut self,
        b: u8,
        escape: Escape,
        role: StrRole,
        mut utf8: Utf8,
        at: u64,
    ) -> Result<(), SplitError> {
        match role {
            StrRole::TopKey if self.key.len() <= MAX_KEY => self.key.push(b),
            StrRole::QueryEndTime if self.query_end_time.len() <= MAX_QUERY_END_TIME => {
                self.query_end_time.push(b)
            }
            _ => {}
        }
        let escape = match escape {
            // Inside a multi-byte character, or starting one: only UTF-8 may follow.
            Escape::None if utf8.due > 0 || b >= 0x80 => {
                utf8 = utf8
                    .next(b)
                    .ok_or_else(|| unexpected(b, "UTF-8 text in a string", at))?;
                Escape::None
            }
            Escape::None => match b {
                b'"' => {
                    self.end_string(role);
                    return Ok(());
                }
                b'\\' => Escape::Backslash,
                0x00..=0x1f => return Err(unexpected(b, "no control character in a string", at)),
                _ => Escape::None,
            },
            Escape::Backslash => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Escape::None,
                b'u' => Escape::Hex(4),
                _ => return Err(unexpected(b, "a valid escape", at)),
            },
            Escape::Hex(n) => {
                if !b.is_ascii_hexdigit() {
                    return Err(unexpected(b, "a hex digit", at));
                }
                if n == 1 {
                    Escape::None
                } else {
                    Escape::Hex(n - 1)
                }
            }
        };
        self.state = State::Str { escape, role, utf8 };
        Ok(())
    }

    fn end_string(&mut self, role: StrRole) {
        match role {
            StrRole::TopKey => {
                self.top_key = classify_key(&self.key);
                self.state = State::Colon;
            }
            StrRole::Key => self.state = State::Colon,
            StrRole::QueryEndTime => {
                if self.query_end_time.len() > MAX_QUERY_END_TIME {
                    self.query_end_time.clear();
                }
                self.state = State::CommaOrClose;
            }
            StrRole::Value => self.state = State::CommaOrClose,
        }
    }
}

/// What the top-level key `quoted` (a JSON string literal, quotes included) names.
fn classify_key(quoted: &[u8]) -> TopKey {
    if quoted.len() < 2 || quoted.len() > MAX_KEY {
        return TopKey::Other;
    }
    let unescaped;
    let name = if quoted.contains(&b'\\') {
        // No known name needs escaping, but an escaped spelling still names it.
        match serde_json::from_slice::<String>(quoted) {
            Ok(name) => {
                unescaped = name;
                unescaped.as_bytes()
            }
            Err(_) => return TopKey::Other,
        }
    } else {
        &quoted[1..quoted.len() - 1]
    };
    if let Some(kind) = EventKind::from_array_name(name) {
        TopKey::Events(kind)
    } else if name == b"queryEndTime" {
        TopKey::QueryEndTime
    } else {
        TopKey::Other
    }
}

#[cfg(test)]
mod tests;
