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
//! does not know is checked for structure and skipped. Inside an event it only tracks strings,
//! escapes and bracket depth (skipping through strings a word at a time, long ones with `memchr`)
//! to find where the element ends; then the element is checked as UTF-8 and serde_json parses it
//! once, which both validates it and yields its time, and the key is hashed over its final bytes.
//!
//! Invariant 5, "raw in, raw out": the bytes of an event are forwarded exactly as the API sent
//! them, never re-serialized, and its [`EventKey`] is the hash of those bytes. The one exception is
//! an element that spans several lines outside its strings (pretty-printed output): its
//! insignificant whitespace is removed in place, string contents untouched. This is needed because
//! line-oriented sinks (file, syslog, HTTP NDJSON) frame one event per line, and a raw newline
//! would split an event in two there. It changes no value, and it is deterministic, so the same
//! event sent again in the same layout gets the same bytes and the same key. Elements without a
//! line break outside strings are kept byte for byte, spaces included.

use std::borrow::Cow;
use std::fmt;

use bytes::BytesMut;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::event::{Batch, EventKey, EventKind, EventMeta};

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
        detail: serde_json::Error,
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

impl SplitError {
    /// Whether asking for the same window again may succeed: true when the body was cut short,
    /// which is what a dropped connection looks like; false for content that is wrong as sent.
    pub fn is_retryable(&self) -> bool {
        match self {
            SplitError::Empty
            | SplitError::EndedInsideEvent { .. }
            | SplitError::EndedEarly { .. } => true,
            SplitError::NotObject { .. }
            | SplitError::EventNotObject { .. }
            | SplitError::EventInvalid { .. }
            | SplitError::EventNotUtf8 { .. }
            | SplitError::EventTooLarge { .. }
            | SplitError::NotArray { .. }
            | SplitError::TrailingData { .. }
            | SplitError::TooDeep { .. }
            | SplitError::Unexpected { .. }
            | SplitError::BuilderFull
            | SplitError::AlreadyFailed => false,
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
}

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

    /// Hands over the complete events without copying them; the bytes of an event still in
    /// progress stay here for the next feed.
    pub fn take(&mut self) -> Batch {
        let buf = self.buf.split_to(self.complete).freeze();
        self.complete = 0;
        Batch {
            buf,
            events: std::mem::take(&mut self.events),
        }
    }

    /// Forgets the bytes of an unfinished event.
    fn drop_partial(&mut self) {
        self.buf.truncate(self.complete);
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
    Str { escape: Escape, role: StrRole },
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

/// Position inside a JSON number, per the grammar `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn is_complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }

    /// The state after `b`, or `None` when `b` cannot continue the number.
    fn next(self, b: u8) -> Option<Num> {
        Some(match (self, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, b'0'..=b'9') => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Num::ExpDigits,
            _ => return None,
        })
    }
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

/// The scan of the event element in progress.
#[derive(Clone, Copy, Debug, Default)]
struct EventScan {
    in_string: bool,
    /// The previous byte inside a string was an unescaped backslash.
    escape: bool,
    /// Open brackets inside the element.
    depth: usize,
    /// A `\n` or `\r` was seen outside strings.
    multiline: bool,
    /// Bytes of the element seen so far, as sent.
    len: u64,
    /// Over the size limit: bytes are no longer kept, only counted.
    oversize: bool,
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
            State::Str { escape, role } => self.string_byte(b, escape, role, at)?,
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
            self.scan = EventScan::default();
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
                    };
                    return Ok(true);
                }
                _ => {}
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
        self.state = State::Str { escape, role };
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

    /// Scans the event element from `chunk[from..]`, keeping its bytes in `out`. Returns where
    /// scanning stopped: just after the element when it completed, else the end of the chunk.
    fn scan_event(
        &mut self,
        chunk: &[u8],
        from: usize,
        out: &mut BatchBuilder,
    ) -> Result<usize, SplitError> {
        let mut s = self.scan;
        let mut i = from;
        let end = chunk.len();
        let mut closed = false;
        while i < end {
            if s.in_string {
                if s.escape {
                    s.escape = false;
                    i += 1;
                    continue;
                }
                match find_quote_or_backslash(&chunk[i..]) {
                    None => i = end,
                    Some(k) => {
                        i += k;
                        if chunk[i] == b'"' {
                            s.in_string = false;
                        } else {
                            s.escape = true;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            let b = chunk[i];
            i += 1;
            match b {
                b'"' => s.in_string = true,
                b'{' | b'[' => {
                    s.depth += 1;
                    if self.stack.len() + s.depth > self.limits.max_depth {
                        return Err(SplitError::TooDeep {
                            limit: self.limits.max_depth,
                            offset: self.pos + (i - 1) as u64,
                        });
                    }
                }
                b'}' | b']' => {
                    s.depth -= 1;
                    if s.depth == 0 {
                        closed = true;
                        break;
                    }
                }
                b'\n' | b'\r' => s.multiline = true,
                _ => {}
            }
        }
        let seen = &chunk[from..i];
        s.len += seen.len() as u64;
        if !s.oversize {
            if s.len > self.limits.max_event_bytes as u64 {
                s.oversize = true;
                out.drop_partial();
            } else {
                out.buf.extend_from_slice(seen);
            }
        }
        self.scan = s;
        if closed {
            self.complete_event(out)?;
            self.state = State::CommaOrClose;
        }
        Ok(i)
    }

    /// Validates the element now at the end of `out` and records it as a complete event.
    fn complete_event(&mut self, out: &mut BatchBuilder) -> Result<(), SplitError> {
        let (kind, index) = (self.kind, self.index);
        if self.scan.oversize {
            return Err(SplitError::EventTooLarge {
                kind,
                index,
                len: self.scan.len,
                limit: self.limits.max_event_bytes,
            });
        }
        let start = out.complete;
        if self.scan.multiline {
            compact(&mut out.buf, start);
        }
        let raw = &out.buf[start..];
        let text = std::str::from_utf8(raw).map_err(|e| SplitError::EventNotUtf8 {
            kind,
            index,
            offset: e.valid_up_to(),
        })?;
        // Checked as UTF-8 as a whole above, so serde_json need not check each string again.
        let times: EventTimes<'_> =
            serde_json::from_str(text).map_err(|detail| SplitError::EventInvalid {
                kind,
                index,
                detail,
            })?;
        let time_ms = times.time_ms(kind);
        let key = EventKey::of(raw);
        let len = raw.len();
        let (Ok(start32), Ok(len32)) = (u32::try_from(start), u32::try_from(len)) else {
            return Err(SplitError::BuilderFull);
        };
        if start32.checked_add(len32).is_none() {
            return Err(SplitError::BuilderFull);
        }
        out.events.push(EventMeta {
            kind,
            start: start32,
            len: len32,
            key,
            time_ms,
        });
        out.complete = start + len;
        self.events += 1;
        Ok(())
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

/// The first `"` or `\\` in `s`.
///
/// Most strings of an event are short keys and values, for which memchr's setup costs more than
/// the search: look 8 bytes at a time first, and hand long strings to memchr.
#[inline]
fn find_quote_or_backslash(s: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    let mut i = 0;
    while i + 8 <= s.len() {
        if i >= SHORT {
            return memchr::memchr2(b'"', b'\\', &s[i..]).map(|k| i + k);
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&s[i..i + 8]);
        let word = u64::from_le_bytes(word);
        let found = zero_bytes(word ^ splat(b'"')) | zero_bytes(word ^ splat(b'\\'));
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|k| i + k)
}

/// `b` in every byte of a word.
#[inline]
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// A word whose lowest set bit is the high bit of the lowest zero byte of `w` (bits above it may
/// be set falsely by borrows, so only the lowest counts); 0 when no byte is zero.
#[inline]
const fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(splat(1)) & !w & splat(0x80)
}

/// Removes whitespace outside strings from `buf[start..]`, in place.
fn compact(buf: &mut BytesMut, start: usize) {
    let mut w = start;
    let mut in_string = false;
    let mut escape = false;
    for r in start..buf.len() {
        let b = buf[r];
        if in_string {
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                b'"' => in_string = true,
                _ => {}
            }
        }
        buf[w] = b;
        w += 1;
    }
    buf.truncate(w);
}

fn unexpected(b: u8, expected: &'static str, offset: u64) -> SplitError {
    SplitError::Unexpected {
        found: format!("'{}'", b.escape_ascii()),
        expected,
        offset,
    }
}

/// The three time fields of an event; every other field is validated and ignored.
#[derive(Default)]
struct EventTimes<'a> {
    message_time: Option<Cow<'a, str>>,
    click_time: Option<Cow<'a, str>>,
    threat_time: Option<Cow<'a, str>>,
}

impl EventTimes<'_> {
    /// `clickTime` for clicks, `messageTime` for messages, else `threatTime`, in ms since the epoch.
    fn time_ms(&self, kind: EventKind) -> Option<i64> {
        let own = if kind.is_click() {
            &self.click_time
        } else {
            &self.message_time
        };
        own.as_deref()
            .and_then(parse_time)
            .or_else(|| self.threat_time.as_deref().and_then(parse_time))
    }
}

fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl<'de> Deserialize<'de> for EventTimes<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventTimesVisitor)
    }
}

struct EventTimesVisitor;

impl<'de> Visitor<'de> for EventTimesVisitor {
    type Value = EventTimes<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut times = EventTimes::default();
        while let Some(field) = map.next_key::<Field>()? {
            let slot = match field {
                Field::MessageTime => &mut times.message_time,
                Field::ClickTime => &mut times.click_time,
                Field::ThreatTime => &mut times.threat_time,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<MaybeStr<'de>>()?.0;
        }
        Ok(times)
    }
}

/// A key of an event object.
enum Field {
    MessageTime,
    ClickTime,
    ThreatTime,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct FieldVisitor;

impl Visitor<'_> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Ok(match name {
            "messageTime" => Field::MessageTime,
            "clickTime" => Field::ClickTime,
            "threatTime" => Field::ThreatTime,
            _ => Field::Other,
        })
    }
}

/// Any JSON value; keeps it only if it is a string.
struct MaybeStr<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MaybeStrVisitor)
    }
}

struct MaybeStrVisitor;

impl<'de> Visitor<'de> for MaybeStrVisitor {
    type Value = MaybeStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeStr(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(MaybeStr(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event as the tests compare it: kind, raw bytes, key, time.
    type Seen = (EventKind, Vec<u8>, EventKey, Option<i64>);

    fn collect(batch: &Batch, seen: &mut Vec<Seen>) {
        for (meta, raw) in batch.iter() {
            assert_eq!(meta.key, EventKey::of(raw));
            seen.push((meta.kind, raw.to_vec(), meta.key, meta.time_ms));
        }
    }

    /// Splits `body` fed in the pieces cut at `cuts` (ascending offsets), taking after every
    /// piece; returns the events and the summary, or the error text.
    fn split_at(body: &[u8], cuts: &[usize]) -> Result<(Vec<Seen>, SplitSummary), String> {
        let mut splitter = Splitter::new(SplitLimits::default());
        let mut out = BatchBuilder::new();
        let mut seen = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            splitter
                .feed(&body[from..cut], &mut out)
                .map_err(|e| e.to_string())?;
            collect(&out.take(), &mut seen);
            from = cut;
        }
        let summary = splitter.finish().map_err(|e| e.to_string())?;
        collect(&out.take(), &mut seen);
        Ok((seen, summary))
    }

    fn split(body: &[u8]) -> Result<(Vec<Seen>, SplitSummary), String> {
        split_at(body, &[])
    }

    fn split_err(body: &[u8]) -> String {
        match split(body) {
            Ok(_) => panic!("{} split without error", String::from_utf8_lossy(body)),
            Err(e) => e,
        }
    }

    fn raws(seen: &[Seen]) -> Vec<&[u8]> {
        seen.iter().map(|s| s.1.as_slice()).collect()
    }

    const REALISTIC: &str = concat!(
        r#"{"queryEndTime":"2026-11-23T10:00:00Z","#,
        r#""messagesBlocked":[{"GUID":"g-1","QID":"q1","messageTime":"2026-11-23T09:10:00.000Z","#,
        r#""recipient":["a@x.example"],"subject":"Invoice {42} [urgent], \"pay\" now \\ é 😀 \u00e9","#,
        r#""spamScore":97,"phishScore":-1.5e2,"completelyRewritten":"true","quarantineFolder":null,"#,
        r#""messageParts":[{"md5":"0a","filename":"x].pdf"}],"#,
        r#""threatsInfoMap":[{"threatID":"t1","threatTime":"2026-11-23T09:11:00Z","threatUrl":"https://x/{"}]}, "#,
        r#"{"GUID":"g-1","id":"2","messageTime":"2026-11-23T09:10:00Z","recipient":["b@x.example"]}],"#,
        r#""unknownStats":{"a":[1,2,{"b":[true,false,null,"}]"]}],"c":{}},"#,
        r#""messagesDelivered":[ ],"#,
        r#""clicksBlocked":null,"#,
        r#""clicksPermitted":[{"id":"c1","url":"https://x/?a=[1]","clickTime":"2026-11-23T09:20:00Z","#,
        r#""threatTime":"2026-11-23T09:00:00Z","campaignId":"c","campaignID":"C"},"#,
        r#"{"id":"c2","clickTime":"not a time","threatTime":"2026-11-23T09:00:00.5+01:00"}]}"#,
        "\n"
    );

    #[test]
    fn realistic_body_yields_every_event_with_kind_time_and_summary() {
        let (seen, summary) = split(REALISTIC.as_bytes()).unwrap();
        assert_eq!(
            summary,
            SplitSummary {
                query_end_time: Some("2026-11-23T10:00:00Z".into()),
                events: 4
            }
        );
        let kinds: Vec<_> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            kinds,
            [
                EventKind::MessagesBlocked,
                EventKind::MessagesBlocked,
                EventKind::ClicksPermitted,
                EventKind::ClicksPermitted
            ]
        );
        assert!(seen[0].1.starts_with(br#"{"GUID":"g-1","QID""#));
        assert!(seen[0].1.ends_with(br#""threatUrl":"https://x/{"}]}"#));
        for (_, raw, _, _) in &seen {
            serde_json::from_slice::<serde_json::Value>(raw).unwrap();
        }
    }

    #[test]
    fn every_chunking_gives_the_same_result_as_one_feed() {
        let body = REALISTIC.as_bytes();
        let whole = split(body).unwrap();
        let bytewise: Vec<usize> = (1..body.len()).collect();
        assert_eq!(split_at(body, &bytewise).unwrap(), whole);
        for cut in 0..=body.len() {
            assert_eq!(split_at(body, &[cut]).unwrap(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn strings_with_brackets_quotes_escapes_and_unicode_stay_inside_their_event() {
        let ev = r#"{"subject":"a}b]c{d[e,f\"g\\","x":"\\\"}","u":"\u007d\ud83d\ude00 日本 😀","e":"\\"}"#;
        let body = format!(r#"{{"messagesDelivered":[{ev},{ev}]}}"#);
        let (seen, _) = split(body.as_bytes()).unwrap();
        assert_eq!(raws(&seen), [ev.as_bytes(), ev.as_bytes()]);
    }

    #[test]
    fn multi_recipient_events_sharing_a_guid_are_both_kept() {
        let a = r#"{"GUID":"g","recipient":["a@x"],"id":"1"}"#;
        let b = r#"{"GUID":"g","recipient":["b@x"],"id":"2"}"#;
        let body = format!(r#"{{"messagesDelivered":[{a},{b}]}}"#);
        let (seen, _) = split(body.as_bytes()).unwrap();
        assert_eq!(raws(&seen), [a.as_bytes(), b.as_bytes()]);
        assert_ne!(seen[0].2, seen[1].2);
    }

    #[test]
    fn identical_duplicate_events_are_both_emitted() {
        let a = r#"{"GUID":"g","clickTime":"2026-11-23T09:20:00Z"}"#;
        let body = format!(r#"{{"clicksBlocked":[{a},{a}]}}"#);
        let (seen, summary) = split(body.as_bytes()).unwrap();
        assert_eq!(summary.events, 2);
        assert_eq!(seen[0], seen[1]);
    }

    #[test]
    fn unknown_top_level_keys_with_nested_values_are_skipped() {
        let body = concat!(
            r#"{"a":{"b":[1,-0.5,2e10,3E-2,"x]}",{"c":null}],"d":{}},"n":12,"s":"[","t":true,"#,
            r#""f":false,"z":null,"e":[],"o":{},"messagesBlocked":[{"k":1}],"w":"\u0041\n"}"#
        );
        let (seen, summary) = split(body.as_bytes()).unwrap();
        assert_eq!(raws(&seen), [br#"{"k":1}"#.as_slice()]);
        assert_eq!(summary.query_end_time, None);
    }

    #[test]
    fn null_and_empty_event_arrays_mean_no_events() {
        for body in [
            r#"{"messagesBlocked":null,"messagesDelivered":null,"clicksBlocked":null,"clicksPermitted":null}"#,
            r#"{"queryEndTime":"2026-11-23T10:00:00Z","messagesBlocked":[],"messagesDelivered":[ ],"clicksBlocked":[
            ],"clicksPermitted":[]}"#,
            "{}",
            " \r\n{ } \n",
        ] {
            let (seen, summary) = split(body.as_bytes()).unwrap();
            assert!(seen.is_empty(), "{body}");
            assert_eq!(summary.events, 0);
        }
    }

    #[test]
    fn escaped_spellings_of_known_keys_still_name_them() {
        let body = br#"{"messages\u0042locked":[{"a":1}],"query\u0045ndTime":"t","x\"y":[{}]}"#;
        let (seen, summary) = split(body).unwrap();
        assert_eq!(seen[0].0, EventKind::MessagesBlocked);
        assert_eq!(seen.len(), 1);
        assert_eq!(summary.query_end_time.as_deref(), Some("t"));
    }

    #[test]
    fn query_end_time_is_unescaped_and_optional() {
        let (_, s) = split(br#"{"queryEndTime":"2026-11-23T10:00:00\u005a"}"#).unwrap();
        assert_eq!(s.query_end_time.as_deref(), Some("2026-11-23T10:00:00Z"));
        let (_, s) = split(br#"{"queryEndTime":12}"#).unwrap();
        assert_eq!(s.query_end_time, None);
    }

    #[test]
    fn pretty_printed_events_are_compacted_outside_strings_only() {
        let body = "{\n  \"messagesBlocked\": [\n    {\n      \"subject\": \"two  spaces\\nand { [ \",\n      \"recipient\": [ \"a@x\" , \"b@x\" ],\n\t\"n\" : 1\r\n    }\n  ]\n}\n";
        let (seen, _) = split(body.as_bytes()).unwrap();
        assert_eq!(
            raws(&seen),
            [
                br#"{"subject":"two  spaces\nand { [ ","recipient":["a@x","b@x"],"n":1}"#
                    .as_slice()
            ]
        );
    }

    #[test]
    fn single_line_events_keep_their_spaces() {
        let ev = r#"{ "a" : [ 1 , 2 ] ,	"b" : "c d" }"#;
        let body = format!("{{\"clicksPermitted\": [ {ev} ,\n {ev}\n]}}");
        let (seen, _) = split(body.as_bytes()).unwrap();
        assert_eq!(raws(&seen), [ev.as_bytes(), ev.as_bytes()]);
    }

    #[test]
    fn take_in_the_middle_of_an_event_keeps_offsets_right() {
        let a = r#"{"id":"1"}"#;
        let b = r#"{"id":"2","subject":"long enough to cut"}"#;
        let c = r#"{"id":"3"}"#;
        let body = format!(r#"{{"messagesBlocked":[{a},{b},{c}]}}"#);
        let cut = body.find("long").unwrap();
        let mut splitter = Splitter::new(SplitLimits::default());
        let mut out = BatchBuilder::new();
        splitter.feed(&body.as_bytes()[..cut], &mut out).unwrap();
        assert_eq!((out.len(), out.raw_bytes()), (1, a.len()));
        let first = out.take();
        assert_eq!(first.raw(&first.events[0]), a.as_bytes());
        assert_eq!(first.buf.len(), a.len());
        assert!(out.is_empty());
        splitter.feed(&body.as_bytes()[cut..], &mut out).unwrap();
        let second = out.take();
        let got: Vec<&[u8]> = second.iter().map(|(_, raw)| raw).collect();
        assert_eq!(got, [b.as_bytes(), c.as_bytes()]);
        assert_eq!(second.events[0].start, 0);
        assert_eq!(splitter.finish().unwrap().events, 3);
    }

    #[test]
    fn every_truncation_of_a_valid_body_fails() {
        let body = REALISTIC.trim_end().as_bytes();
        for end in 0..body.len() {
            assert!(
                split(&body[..end]).is_err(),
                "truncated at {end} split without error"
            );
        }
    }

    #[test]
    fn truncation_inside_an_event_names_the_event_and_offset() {
        let body = r#"{"messagesBlocked":[{"a":1},{"b":"#;
        assert_eq!(
            split_err(body.as_bytes()),
            format!(
                "response body ended inside event 1 of messagesBlocked (byte {})",
                body.len()
            )
        );
        assert_eq!(
            split_err(br#"{"messagesBlocked":[{"a":1}"#),
            "response body ended before the response object was closed (byte 27)"
        );
    }

    #[test]
    fn bodies_that_are_not_objects_are_rejected_with_their_start() {
        assert_eq!(split_err(b""), "response body is empty");
        assert_eq!(split_err(b" \n\t "), "response body is empty");
        assert_eq!(
            split_err(b"<html><body>Service Unavailable</body></html>"),
            "response body is not a JSON object: starts with \"<html><body>Service Unavailable</body></\""
        );
        assert_eq!(
            split_err(b"  <html>"),
            "response body is not a JSON object: starts with \"<html>\""
        );
        assert_eq!(
            split_err(b"Nov 23 10:00:00 tap: \"msg\"\n"),
            "response body is not a JSON object: starts with \"Nov 23 10:00:00 tap: \\\"msg\\\"\\n\""
        );
        assert_eq!(
            split_err(br#"[{"a":1}]"#),
            "response body is not a JSON object: starts with \"[{\\\"a\\\":1}]\""
        );
    }

    #[test]
    fn trailing_data_after_the_object_is_rejected() {
        assert_eq!(
            split_err(b"{} \n{}"),
            "trailing data after the response object at byte 4"
        );
        assert!(split(b"{}\r\n \t").is_ok());
    }

    #[test]
    fn non_object_elements_are_rejected_with_array_and_index() {
        assert_eq!(
            split_err(br#"{"clicksPermitted":[{"a":1},{"b":2},{},"x"]}"#),
            "event 3 of clicksPermitted is not a JSON object"
        );
        assert_eq!(
            split_err(br#"{"messagesBlocked":[ 1 ]}"#),
            "event 0 of messagesBlocked is not a JSON object"
        );
        assert_eq!(
            split_err(br#"{"messagesBlocked":[[]]}"#),
            "event 0 of messagesBlocked is not a JSON object"
        );
        assert_eq!(
            split_err(br#"{"clicksBlocked":{"a":1}}"#),
            "clicksBlocked is neither an array nor null (byte 17)"
        );
        assert_eq!(
            split_err(br#"{"clicksBlocked":"none"}"#),
            "clicksBlocked is neither an array nor null (byte 17)"
        );
    }

    #[test]
    fn invalid_event_json_names_the_event() {
        let err = split_err(br#"{"messagesBlocked":[{"a":1},{"a":1},{"a":1},{"a":1},{"a":1},{"a":1},{"a":1},{"a":}]}"#);
        assert!(
            err.starts_with("event 7 of messagesBlocked is not valid JSON: "),
            "{err}"
        );
        for bad in [
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":[1}]"#,
            r#"{"a":"\x"}"#,
            r#"{"a":tru}"#,
        ] {
            let body = format!(r#"{{"clicksBlocked":[{bad}]}}"#);
            let err = split_err(body.as_bytes());
            assert!(
                err.starts_with("event 0 of clicksBlocked is not valid JSON: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn structurally_invalid_skipped_values_are_rejected() {
        for bad in [
            r#"{"x":[1,}"#,
            r#"{"x":01}"#,
            r#"{"x":-}"#,
            r#"{"x":1.}"#,
            r#"{"x":1e}"#,
            r#"{"x":tru}"#,
            r#"{"x":nulll}"#,
            r#"{"x":"\q"}"#,
            r#"{"x":"\u12g4"}"#,
            r#"{"x":{1:2}}"#,
            r#"{"x":{"a" 2}}"#,
            r#"{"x":[1 2]}"#,
            r#"{"x":[1}"#,
            r#"{"x":{"a":1]}"#,
            r#"{"x" 1}"#,
            r#"{"x":}"#,
            r#"{,}"#,
            "{\"x\":\"a\u{1}b\"}",
        ] {
            let err = split_err(bad.as_bytes());
            assert!(
                err.starts_with("invalid JSON in the response body at byte "),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            split_err(br#"{"x":[1 2]}"#),
            "invalid JSON in the response body at byte 8: found '2', expected ',' or a closing bracket"
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_rejected() {
        let limits = SplitLimits {
            max_depth: 5,
            ..SplitLimits::default()
        };
        let run = |body: &str| {
            let mut s = Splitter::new(limits);
            s.feed(body.as_bytes(), &mut BatchBuilder::new())
                .and_then(|()| s.finish())
                .map_err(|e| e.to_string())
        };
        // Top object, array, event, two more levels: 5.
        assert!(run(r#"{"messagesBlocked":[{"a":[{}]}]}"#).is_ok());
        assert_eq!(
            run(r#"{"messagesBlocked":[{"a":[{"b":[]}]}]}"#).unwrap_err(),
            "response nesting deeper than 5 (byte 31)"
        );
        assert!(run(r#"{"x":[[[[]]]]}"#).is_ok());
        assert_eq!(
            run(r#"{"x":[[[[[]]]]]}"#).unwrap_err(),
            "response nesting deeper than 5 (byte 9)"
        );
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            split_err(deep.as_bytes()),
            "response nesting deeper than 64 (byte 68)"
        );
        let deep_event = format!(
            "{{\"messagesBlocked\":[{}{}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(split_err(deep_event.as_bytes())
            .starts_with("event 0 of messagesBlocked is not a JSON object"));
        let deep_event = format!(
            "{{\"messagesBlocked\":[{{\"a\":{}{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(
            split_err(deep_event.as_bytes()),
            "response nesting deeper than 64 (byte 86)"
        );
    }

    #[test]
    fn oversized_events_are_rejected_with_their_size() {
        let limits = SplitLimits {
            max_event_bytes: 20,
            ..SplitLimits::default()
        };
        let ok = r#"{"a":"0123456789ab"}"#;
        let big = r#"{"a":"0123456789abc"}"#;
        assert_eq!(ok.len(), 20);
        let body = format!(r#"{{"clicksBlocked":[{ok},{ok},{big}]}}"#);
        for chunk in [1, 7, body.len()] {
            let mut s = Splitter::new(limits);
            let mut out = BatchBuilder::new();
            let err = body
                .as_bytes()
                .chunks(chunk)
                .try_for_each(|c| s.feed(c, &mut out))
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "event 2 of clicksBlocked is 21 bytes, over the 20-byte limit"
            );
            assert!(out.raw_bytes() <= 40);
        }
    }

    #[test]
    fn times_are_read_per_kind_with_threat_time_fallback() {
        let body = concat!(
            r#"{"messagesDelivered":[{"messageTime":"2026-11-23T09:10:00Z","clickTime":"2001-01-01T00:00:00Z"},"#,
            r#"{"messageTime":"2026-11-23T09:10:00.250Z"},"#,
            r#"{"threatTime":"2026-11-23T09:10:00+01:00"},"#,
            r#"{"messageTime":"yesterday","threatTime":"2026-11-23T09:10:00Z"},"#,
            r#"{"MessageTime":"2026-11-23T09:10:00Z","messagetime":"2026-11-23T09:10:00Z"},"#,
            r#"{"messageTime":1234,"threatTime":["x"]},"#,
            r#"{"messageTime":"2026-11-23T09:10:00Z","messageTime":null}],"#,
            r#""clicksBlocked":[{"clickTime":"2026-11-23T09:20:00.123456Z","messageTime":"2001-01-01T00:00:00Z"},"#,
            r#"{"threatTime":"2026-11-23T09:20:00Z"},{"clickTime":"2026-11-23T09:20:00\u005a"}]}"#
        );
        let (seen, _) = split(body.as_bytes()).unwrap();
        let t = |s: &str| {
            Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .timestamp_millis(),
            )
        };
        let times: Vec<_> = seen.iter().map(|s| s.3).collect();
        assert_eq!(
            times,
            [
                t("2026-11-23T09:10:00Z"),
                t("2026-11-23T09:10:00.250Z"),
                t("2026-11-23T08:10:00Z"),
                t("2026-11-23T09:10:00Z"),
                None,
                None,
                None,
                t("2026-11-23T09:20:00.123Z"),
                t("2026-11-23T09:20:00Z"),
                t("2026-11-23T09:20:00Z"),
            ]
        );
    }

    #[test]
    fn a_failed_splitter_refuses_more_input_and_drops_the_partial_event() {
        let mut s = Splitter::new(SplitLimits {
            max_depth: 3,
            ..SplitLimits::default()
        });
        let mut out = BatchBuilder::new();
        s.feed(br#"{"clicksBlocked":[{"a":1},{"b":"part"#, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        let err = s.feed(br#"ial","c":[1]}]}"#, &mut out).unwrap_err();
        assert!(matches!(err, SplitError::TooDeep { .. }), "{err}");
        assert_eq!(out.raw_bytes(), 7);
        assert_eq!(out.take().buf.len(), 7);
        assert!(matches!(
            s.feed(b"}", &mut out),
            Err(SplitError::AlreadyFailed)
        ));
        assert!(matches!(s.finish(), Err(SplitError::AlreadyFailed)));
    }

    #[test]
    fn events_that_are_not_utf8_are_rejected() {
        let mut body = br#"{"messagesBlocked":[{"a":"ok"},{"a":"x"#.to_vec();
        body.extend_from_slice(b"\xff\xfe\"}]}");
        assert_eq!(
            split_err(&body),
            "event 1 of messagesBlocked is not valid UTF-8 (byte 7 of the event)"
        );
    }

    #[test]
    fn quote_search_finds_the_first_quote_or_backslash_at_any_length() {
        for len in 0..100 {
            let hay = vec![b'a'; len];
            assert_eq!(find_quote_or_backslash(&hay), None);
            for at in 0..len {
                for (needle, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                    let mut hay = hay.clone();
                    hay[at] = needle;
                    if at + 1 < len {
                        hay[len - 1] = other;
                    }
                    assert_eq!(find_quote_or_backslash(&hay), Some(at), "len {len} at {at}");
                }
            }
        }
        assert_eq!(find_quote_or_backslash("é😀\"".as_bytes()), Some(6));
    }

    #[test]
    fn only_a_body_cut_short_is_retryable() {
        assert!(SplitError::EndedEarly { offset: 3 }.is_retryable());
        assert!(!SplitError::TrailingData { offset: 3 }.is_retryable());
    }

    /// A tiny deterministic PRNG (xorshift64*), so the randomized tests need no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random JSON text written twice: `spaced` with random whitespace between tokens, and
    /// `compact` without; `newline` notes whether `spaced` got a line break between tokens.
    struct Gen {
        rng: Rng,
        spaced: String,
        compact: String,
        newline: bool,
        pretty: bool,
    }

    impl Gen {
        fn ws(&mut self) {
            let choices: &[&str] = if self.pretty {
                &["", " ", "\n", "\t", "\r\n  "]
            } else {
                &["", "", " ", "\t"]
            };
            let w = choices[self.rng.below(choices.len())];
            self.newline |= w.contains('\n');
            self.spaced.push_str(w);
        }

        fn tok(&mut self, t: &str) {
            self.ws();
            self.spaced.push_str(t);
            self.compact.push_str(t);
        }

        fn string(&mut self) {
            const PIECES: &[&str] = &[
                "a",
                "Z",
                " ",
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\\\"",
                "\\\\",
                "\\n",
                "\\/",
                "é",
                "😀",
                "日",
                "\\u00e9",
                "\\ud83d\\ude00",
                "\\u005c",
                "x\\\\\\\"y",
                "\n\\n",
            ];
            let mut s = String::from("\"");
            for _ in 0..self.rng.below(8) {
                let p = PIECES[self.rng.below(PIECES.len())];
                // A raw newline is not valid JSON inside a string: escape it.
                s.push_str(if p == "\n\\n" { "\\n\\n" } else { p });
            }
            s.push('"');
            self.tok(&s);
        }

        fn value(&mut self, depth: usize) {
            let pick = if depth >= 5 {
                self.rng.below(5)
            } else {
                self.rng.below(8)
            };
            match pick {
                0 => self.tok("null"),
                1 => {
                    let b = ["true", "false"][self.rng.below(2)];
                    self.tok(b)
                }
                2 => {
                    let n = ["0", "-1", "12.5", "3e7", "-0.25E-3", "42"][self.rng.below(6)];
                    self.tok(n)
                }
                3 | 4 => self.string(),
                5 => {
                    self.tok("[");
                    for i in 0..self.rng.below(4) {
                        if i > 0 {
                            self.tok(",");
                        }
                        self.value(depth + 1);
                    }
                    self.tok("]");
                }
                _ => self.object(depth),
            }
        }

        fn object(&mut self, depth: usize) {
            self.tok("{");
            for i in 0..self.rng.below(5) {
                if i > 0 {
                    self.tok(",");
                }
                self.string();
                self.tok(":");
                self.value(depth + 1);
            }
            self.tok("}");
        }

        /// Starts recording one event; returns the spaced length before it.
        fn mark(&mut self) -> (usize, usize) {
            self.newline = false;
            (self.spaced.len(), self.compact.len())
        }
    }

    /// A random response body and the raw events it must yield.
    fn random_body(seed: u64, pretty: bool) -> (String, Vec<(EventKind, String)>) {
        let mut g = Gen {
            rng: Rng(seed | 1),
            spaced: String::new(),
            compact: String::new(),
            newline: false,
            pretty,
        };
        let mut expected = Vec::new();
        g.tok("{");
        let keys = g.rng.below(7);
        for i in 0..keys {
            if i > 0 {
                g.tok(",");
            }
            match g.rng.below(4) {
                0 => {
                    g.tok("\"other\"");
                    g.tok(":");
                    g.value(1);
                }
                1 => {
                    g.tok("\"queryEndTime\"");
                    g.tok(":");
                    g.tok("\"2026-11-23T10:00:00Z\"");
                }
                _ => {
                    let kind = EventKind::SIEM[g.rng.below(4)];
                    g.tok(&format!("\"{kind}\""));
                    g.tok(":");
                    if g.rng.below(6) == 0 {
                        g.tok("null");
                        continue;
                    }
                    g.tok("[");
                    for j in 0..g.rng.below(4) {
                        if j > 0 {
                            g.tok(",");
                        }
                        g.ws();
                        let (s0, c0) = g.mark();
                        g.compact.push('{');
                        g.spaced.push('{');
                        for f in 0..g.rng.below(5) {
                            if f > 0 {
                                g.tok(",");
                            }
                            g.string();
                            g.tok(":");
                            g.value(3);
                        }
                        g.tok("}");
                        let raw = if g.newline {
                            g.compact[c0..].to_string()
                        } else {
                            g.spaced[s0..].to_string()
                        };
                        expected.push((kind, raw));
                    }
                    g.tok("]");
                }
            }
        }
        g.tok("}");
        g.ws();
        (g.spaced, expected)
    }

    #[test]
    fn random_bodies_split_the_same_under_random_chunkings() {
        for seed in 0..400u64 {
            let (body, expected) =
                random_body(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), seed % 2 == 0);
            let whole =
                split(body.as_bytes()).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{body}"));
            let got: Vec<(EventKind, String)> = whole
                .0
                .iter()
                .map(|s| (s.0, String::from_utf8(s.1.clone()).unwrap()))
                .collect();
            assert_eq!(got, expected, "seed {seed}\n{body}");
            let mut rng = Rng(seed + 7);
            for _ in 0..4 {
                let mut cuts: Vec<usize> = (0..rng.below(12))
                    .map(|_| rng.below(body.len() + 1))
                    .collect();
                cuts.sort_unstable();
                assert_eq!(
                    split_at(body.as_bytes(), &cuts).unwrap(),
                    whole,
                    "seed {seed} cuts {cuts:?}"
                );
            }
        }
    }

    #[test]
    fn mangled_bodies_never_panic_and_fail_the_same_under_any_chunking() {
        for seed in 0..300u64 {
            let (body, _) = random_body(seed ^ 0x5555, seed % 3 == 0);
            let mut bytes = body.into_bytes();
            let mut rng = Rng(seed + 99);
            for _ in 0..=rng.below(3) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[at] = b"{}[],:\"\\ x0n"[rng.below(12)],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            let whole = split(&bytes);
            let bytewise: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(split_at(&bytes, &bytewise), whole, "seed {seed}");
        }
    }
}
