//! Inside an event element: validating it while finding where it ends, and turning its bytes
//! into an event, in one pass over its bytes.
//!
//! While the push parser in `mod.rs` sees an event array's element open, [`Splitter::scan_event`]
//! takes over. It is a validating JSON scanner (RFC 8259, as serde_json reads it): every token is
//! checked as it goes by (strings a word at a time, looking for a quote, a backslash or a control
//! character), the bytes are appended to the [`BatchBuilder`] and fed to the event's BLAKE3
//! hasher as they come, so an element may span any number of chunks and each byte is read once
//! while it is in cache. On the way it notes where the event's own keys that may name a field the
//! daemon reads (`messageTime`, `clickTime`, `threatTime`, `customerEid`) and their values lie;
//! when the element closes, [`Splitter::complete_event`] checks it as UTF-8 (one `from_utf8` pass),
//! reads those few values ([`EventTimes::from_fields`]) and takes the key from the hasher.
//!
//! It keeps invariant 5: the bytes are the API's own, except that an element spanning several
//! lines outside its strings has that insignificant whitespace removed ([`compact`]), string
//! contents untouched. Such an element is validated as sent (the scan) before it is compacted:
//! removing whitespace from invalid JSON can make it valid (`[1\n2]` becomes `[12]`), and that
//! would forward a value never sent. Its time fields are then read from the compacted bytes by
//! serde_json ([`EventTimes::read`]) and its key hashed from them: rare, so not worth a second
//! way of mapping offsets.

use bytes::BytesMut;

use super::times::{Customer, EventTimes, FieldSpan};
use super::{BatchBuilder, Escape, SplitError, Splitter, State};
use crate::event::{EventKey, EventKind, EventMeta};

/// Deepest nesting inside an event: serde_json's own limit, which the splitter's read of events
/// had before it scanned them itself. `SplitLimits::max_depth` (default 64) is lower.
const MAX_EVENT_DEPTH: u32 = 128;

/// Longest key text (between its quotes) that can name one of the fields read: the longest name,
/// 11 characters, each written as a 6-byte `\uXXXX` escape.
const MAX_FIELD_KEY: u64 = 66;

/// What comes next in the element, outside strings, or which token is in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum At {
    /// A value must come (the element itself, after `:`, after `,` in an array).
    #[default]
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
    /// Inside a string (a key when `EventScan::str_key`).
    Str,
    Number(Num),
    /// Inside `true`, `false` or `null`; `pos` bytes of `lit` matched.
    Literal {
        lit: &'static [u8],
        pos: u8,
    },
}

/// The scan of the event element in progress.
#[derive(Clone, Copy, Debug)]
pub(super) struct EventScan {
    at: At,
    /// Inside a string: where in an escape.
    escape: Escape,
    /// The string in progress is a key.
    str_key: bool,
    /// Bit `d - 1` set: the container open at depth `d` is an object, else an array.
    objects: u128,
    /// Open brackets inside the element.
    depth: u32,
    /// A `\n` or `\r` was seen outside strings.
    multiline: bool,
    /// Bytes of the element seen so far, as sent.
    len: u64,
    /// Over the size limit: bytes are no longer kept, only counted.
    oversize: bool,
    /// The event's own key being read: the offset of its opening quote, and whether it holds an
    /// escape.
    key_start: u64,
    key_escaped: bool,
    /// The last key of the event's own that may name a field read: its span (quotes included).
    field_key: Option<(u64, u64)>,
    /// The offset of that key's value's first byte, once it began.
    field_value: Option<u64>,
    /// The body offset of the element's first byte.
    began: u64,
}

impl Default for EventScan {
    fn default() -> Self {
        EventScan {
            at: At::Value,
            escape: Escape::None,
            str_key: false,
            objects: 0,
            depth: 0,
            multiline: false,
            len: 0,
            oversize: false,
            key_start: 0,
            key_escaped: false,
            field_key: None,
            field_value: None,
            began: 0,
        }
    }
}

impl EventScan {
    /// The scan of an element whose first byte is at body offset `began`.
    pub(super) fn at_body_offset(began: u64) -> EventScan {
        EventScan {
            began,
            ..EventScan::default()
        }
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.objects >> (self.depth - 1) & 1 == 1
    }
}

/// Position inside a JSON number, per the grammar `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Num {
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
    pub(super) fn is_complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }

    /// The state after `b`, or `None` when `b` cannot continue the number.
    pub(super) fn next(self, b: u8) -> Option<Num> {
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

/// What one byte outside strings did.
enum Step {
    /// Consumed it.
    Next,
    /// Ended a number: the byte must be read again after it.
    Again,
    /// Closed the element.
    Closed,
}

impl Splitter {
    /// Scans the event element from `chunk[from..]`, keeping its bytes in `out`. Returns where
    /// scanning stopped: just after the element when it completed, else the end of the chunk.
    pub(super) fn scan_event(
        &mut self,
        chunk: &[u8],
        from: usize,
        out: &mut BatchBuilder,
    ) -> Result<usize, SplitError> {
        let mut s = self.scan;
        let mut i = from;
        let end = chunk.len();
        // The offset in the element of `chunk[k]` is `k + base`.
        let base = s.len.wrapping_sub(from as u64);
        let mut closed = false;
        while i < end {
            if matches!(s.at, At::Str) {
                match s.escape {
                    Escape::None => match find_string_stop(&chunk[i..]) {
                        None => i = end,
                        Some(k) => {
                            i += k;
                            let at = base.wrapping_add(i as u64);
                            match chunk[i] {
                                b'"' => self.scan_string_end(&mut s, at),
                                b'\\' => {
                                    s.escape = Escape::Backslash;
                                    s.key_escaped |= s.str_key;
                                }
                                _ => {
                                    return Err(self.invalid(
                                        "control character (\\u0000-\\u001F) in a string",
                                        at,
                                    ))
                                }
                            }
                            i += 1;
                        }
                    },
                    Escape::Backslash => {
                        s.escape = match chunk[i] {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Escape::None,
                            b'u' => Escape::Hex(4),
                            _ => {
                                return Err(
                                    self.invalid("invalid escape", base.wrapping_add(i as u64))
                                )
                            }
                        };
                        i += 1;
                    }
                    Escape::Hex(n) => {
                        if !chunk[i].is_ascii_hexdigit() {
                            return Err(self.invalid("invalid escape", base.wrapping_add(i as u64)));
                        }
                        s.escape = if n == 1 {
                            Escape::None
                        } else {
                            Escape::Hex(n - 1)
                        };
                        i += 1;
                    }
                }
                continue;
            }
            match self.scan_byte(&mut s, chunk[i], base.wrapping_add(i as u64))? {
                Step::Next => i += 1,
                Step::Again => {}
                Step::Closed => {
                    i += 1;
                    closed = true;
                    break;
                }
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
                self.hasher.update(seen);
            }
        }
        self.scan = s;
        if closed {
            self.complete_event(out)?;
            self.state = State::CommaOrClose;
        }
        Ok(i)
    }

    /// One byte `b` outside strings, at offset `at` of the element.
    #[inline]
    fn scan_byte(&mut self, s: &mut EventScan, b: u8, at: u64) -> Result<Step, SplitError> {
        match s.at {
            At::Value | At::ValueOrClose => match b {
                b' ' | b'\t' => {}
                b'\n' | b'\r' => s.multiline = true,
                b']' if s.at == At::ValueOrClose => return self.scan_close(s, b, at),
                _ => self.scan_value(s, b, at)?,
            },
            At::KeyOrClose | At::Key => match b {
                b' ' | b'\t' => {}
                b'\n' | b'\r' => s.multiline = true,
                b'"' => {
                    s.at = At::Str;
                    s.str_key = true;
                    if s.depth == 1 {
                        s.key_start = at;
                        s.key_escaped = false;
                        s.field_key = None;
                    }
                }
                b'}' if s.at == At::KeyOrClose => return self.scan_close(s, b, at),
                _ => return Err(self.invalid("expected a string key", at)),
            },
            At::Colon => match b {
                b' ' | b'\t' => {}
                b'\n' | b'\r' => s.multiline = true,
                b':' => s.at = At::Value,
                _ => return Err(self.invalid("expected ':'", at)),
            },
            At::CommaOrClose => match b {
                b' ' | b'\t' => {}
                b'\n' | b'\r' => s.multiline = true,
                b',' => {
                    if s.depth == 1 {
                        self.note_field(s, at);
                    }
                    s.at = if s.in_object() { At::Key } else { At::Value };
                }
                b'}' | b']' => return self.scan_close(s, b, at),
                _ => return Err(self.invalid("expected ',' or a closing bracket", at)),
            },
            At::Number(num) => match num.next(b) {
                Some(next) => s.at = At::Number(next),
                None if num.is_complete() => {
                    s.at = At::CommaOrClose;
                    return Ok(Step::Again);
                }
                None => return Err(self.invalid("invalid number", at)),
            },
            At::Literal { lit, pos } => {
                let pos = usize::from(pos);
                if lit.get(pos) != Some(&b) {
                    return Err(self.invalid("expected true, false or null", at));
                }
                s.at = if pos + 1 == lit.len() {
                    At::CommaOrClose
                } else {
                    At::Literal {
                        lit,
                        pos: pos as u8 + 1,
                    }
                };
            }
            // Handled by `scan_event`.
            At::Str => {}
        }
        Ok(Step::Next)
    }

    /// The first byte `b` of a value, at offset `at` of the element.
    fn scan_value(&mut self, s: &mut EventScan, b: u8, at: u64) -> Result<(), SplitError> {
        if s.depth == 1 && s.field_key.is_some() {
            s.field_value = Some(at);
        }
        match b {
            b'{' | b'[' => {
                s.depth += 1;
                if self.stack.len() + s.depth as usize > self.limits.max_depth {
                    return Err(SplitError::TooDeep {
                        limit: self.limits.max_depth,
                        offset: s.began + at,
                    });
                }
                if s.depth > MAX_EVENT_DEPTH {
                    return Err(self.invalid("nested deeper than 128", at));
                }
                let bit = 1u128 << (s.depth - 1);
                if b == b'{' {
                    s.objects |= bit;
                    s.at = At::KeyOrClose;
                } else {
                    s.objects &= !bit;
                    s.at = At::ValueOrClose;
                }
            }
            b'"' => {
                s.at = At::Str;
                s.str_key = false;
            }
            b'-' => s.at = At::Number(Num::Minus),
            b'0' => s.at = At::Number(Num::Zero),
            b'1'..=b'9' => s.at = At::Number(Num::Int),
            b't' => s.at = literal(b"true"),
            b'f' => s.at = literal(b"false"),
            b'n' => s.at = literal(b"null"),
            _ => return Err(self.invalid("expected a JSON value", at)),
        }
        Ok(())
    }

    /// A closing bracket `b` at offset `at` of the element, where one may stand.
    fn scan_close(&mut self, s: &mut EventScan, b: u8, at: u64) -> Result<Step, SplitError> {
        let object = s.in_object();
        if object != (b == b'}') {
            let expected = if object {
                "expected ',' or '}'"
            } else {
                "expected ',' or ']'"
            };
            return Err(self.invalid(expected, at));
        }
        if s.depth == 1 {
            self.note_field(s, at);
        }
        s.depth -= 1;
        if s.depth == 0 {
            return Ok(Step::Closed);
        }
        s.at = At::CommaOrClose;
        Ok(Step::Next)
    }

    /// The closing quote of a string, at offset `at` of the element.
    fn scan_string_end(&mut self, s: &mut EventScan, at: u64) {
        if !s.str_key {
            s.at = At::CommaOrClose;
            return;
        }
        s.at = At::Colon;
        if s.depth == 1 {
            let inner = at - s.key_start - 1;
            let may_name = if s.key_escaped {
                inner <= MAX_FIELD_KEY
            } else {
                (9..=11).contains(&inner)
            };
            if may_name {
                s.field_key = Some((s.key_start, at + 1));
            }
        }
    }

    /// The value of the event's own last key ended just before offset `at`: keep its span
    /// when the key may name a field read.
    fn note_field(&mut self, s: &mut EventScan, at: u64) {
        if let (Some(key), Some(value)) = (s.field_key.take(), s.field_value.take()) {
            self.fields.push(FieldSpan {
                key: (key.0 as usize, key.1 as usize),
                value: (value as usize, at as usize),
            });
        }
    }

    /// The element is not valid JSON at its byte `at`.
    fn invalid(&self, what: &'static str, at: u64) -> SplitError {
        SplitError::EventInvalid {
            kind: self.kind,
            index: self.index,
            detail: format!("{what} at byte {at} of the event"),
        }
    }

    /// Records the element now at the end of `out` (validated by the scan) as a complete event.
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
        fn utf8(raw: &[u8], kind: EventKind, index: u64) -> Result<&str, SplitError> {
            std::str::from_utf8(raw).map_err(|e| SplitError::EventNotUtf8 {
                kind,
                index,
                offset: e.valid_up_to(),
            })
        }
        let multiline = self.scan.multiline;
        if multiline {
            // Checked as sent; compacting then removes only ASCII whitespace.
            utf8(&out.buf[start..], kind, index)?;
            compact(&mut out.buf, start);
        }
        let text = utf8(&out.buf[start..], kind, index)?;
        let (key, times) = if multiline {
            let times = EventTimes::read(text).map_err(|e| SplitError::EventInvalid {
                kind,
                index,
                detail: e.to_string(),
            })?;
            (EventKey::of(text.as_bytes()), times)
        } else {
            let key = EventKey::of_hash(&self.hasher.finalize());
            (key, EventTimes::from_fields(text, &self.fields))
        };
        let time_ms = times.time_ms(kind);
        let len = out.buf.len() - start;
        let (Ok(start32), Ok(len32)) = (u32::try_from(start), u32::try_from(len)) else {
            return Err(SplitError::BuilderFull);
        };
        if start32.checked_add(len32).is_none() {
            return Err(SplitError::BuilderFull);
        }
        let customer = match &times.customer {
            Customer::Id(c) => Some(super::intern_customer(&mut out.last_customer, c)),
            Customer::None => None,
            Customer::Invalid => {
                self.invalid_customers += 1;
                None
            }
        };
        out.events.push(EventMeta {
            kind,
            start: start32,
            len: len32,
            key,
            time_ms,
            customer,
        });
        out.complete = start + len;
        self.events += 1;
        Ok(())
    }
}

fn literal(lit: &'static [u8]) -> At {
    At::Literal { lit, pos: 1 }
}

/// The first byte of `s` that ends a run of plain string content: `"`, `\\` or a control
/// character (below 0x20, invalid in a JSON string). Looks 8 bytes at a time.
#[inline]
fn find_string_stop(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&s[i..i + 8]);
        let word = u64::from_le_bytes(word);
        let found =
            zero_bytes(word ^ splat(b'"')) | zero_bytes(word ^ splat(b'\\')) | below_space(word);
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
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

/// A word whose lowest set bit is the high bit of the lowest byte of `w` below 0x20 (as
/// [`zero_bytes`]: only the lowest counts); 0 when there is none.
#[inline]
const fn below_space(w: u64) -> u64 {
    w.wrapping_sub(splat(0x20)) & !w & splat(0x80)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stop_search_finds_the_first_quote_backslash_or_control_character_at_any_length() {
        for len in 0..100 {
            let hay = vec![b'a'; len];
            assert_eq!(find_string_stop(&hay), None);
            for at in 0..len {
                for (needle, other) in [
                    (b'"', b'\\'),
                    (b'\\', b'"'),
                    (b'\n', b'"'),
                    (0x00, b'\\'),
                    (0x1f, 0x01),
                ] {
                    let mut hay = hay.clone();
                    hay[at] = needle;
                    if at + 1 < len {
                        hay[len - 1] = other;
                    }
                    assert_eq!(find_string_stop(&hay), Some(at), "len {len} at {at}");
                }
            }
        }
        assert_eq!(find_string_stop("é😀\"".as_bytes()), Some(6));
        // DEL and bytes of multi-byte characters are string content.
        assert_eq!(find_string_stop(b"\x7f\x80\xff\x20ab\xc3\xa9!\""), Some(9));
    }
}
