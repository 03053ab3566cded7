//! Request bodies: a batch's encoded elements joined into bodies within a byte and an event limit
//! ([`Packer`]), and gzip.
//!
//! Invariant 5: each element is copied in as the sink encoded it (raw event bytes untouched);
//! limits are measured before compression, and every element of the batch lands in exactly one
//! body unless the batch fails whole ([`Oversize::Fail`]), so nothing is dropped on the way.

use std::io::Write;

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// What to do with one encoded element larger than the byte limit on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Send it in a request of its own; the limit is a target, the destination decides.
    Alone,
    /// The limit is the destination's hard limit: fail the whole batch (the index is returned).
    Fail,
}

/// Joins encoded elements into request bodies `prefix e1 sep e2 sep … suffix`, each at most
/// `max_bytes` long (prefix and suffix included) and holding at most `max_events` elements.
pub struct Packer {
    pub prefix: Vec<u8>,
    pub separator: &'static [u8],
    pub suffix: Vec<u8>,
    pub max_bytes: usize,
    pub max_events: usize,
    pub oversize: Oversize,
}

/// A request body and how many elements it holds.
pub struct Body {
    pub bytes: Vec<u8>,
    pub events: usize,
}

impl Packer {
    /// NDJSON and the HEC format: elements one after another, each followed by a newline.
    pub fn lines(max_bytes: usize, max_events: usize) -> Packer {
        Packer {
            prefix: Vec::new(),
            separator: b"",
            suffix: Vec::new(),
            max_bytes,
            max_events,
            oversize: Oversize::Alone,
        }
    }

    /// A JSON array.
    pub fn array(max_bytes: usize, max_events: usize, oversize: Oversize) -> Packer {
        Packer {
            prefix: b"[".to_vec(),
            separator: b",",
            suffix: b"]".to_vec(),
            max_bytes,
            max_events,
            oversize,
        }
    }

    /// Packs the elements `encode` writes, one call per element index in `0..count`. On
    /// [`Oversize::Fail`], `Err((index, size))` names the first element that cannot fit alone.
    pub fn pack(
        &self,
        count: usize,
        mut encode: impl FnMut(usize, &mut Vec<u8>),
    ) -> Result<Vec<Body>, (usize, usize)> {
        let frame = self.prefix.len() + self.suffix.len();
        let mut bodies = Vec::new();
        let mut current = Body {
            bytes: Vec::new(),
            events: 0,
        };
        let mut element = Vec::new();
        for i in 0..count {
            element.clear();
            encode(i, &mut element);
            if frame + element.len() > self.max_bytes && self.oversize == Oversize::Fail {
                return Err((i, frame + element.len()));
            }
            let added = element.len()
                + if current.events > 0 {
                    self.separator.len()
                } else {
                    0
                };
            if current.events > 0
                && (current.events >= self.max_events
                    || current.bytes.len() + added + self.suffix.len() > self.max_bytes)
            {
                current.bytes.extend_from_slice(&self.suffix);
                bodies.push(std::mem::replace(
                    &mut current,
                    Body {
                        bytes: Vec::new(),
                        events: 0,
                    },
                ));
            }
            if current.events == 0 {
                current.bytes.extend_from_slice(&self.prefix);
            } else {
                current.bytes.extend_from_slice(self.separator);
            }
            current.bytes.extend_from_slice(&element);
            current.events += 1;
        }
        if current.events > 0 {
            current.bytes.extend_from_slice(&self.suffix);
            bodies.push(current);
        }
        Ok(bodies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packer_respects_bytes_and_events() {
        let items = ["aaaa", "bbbb", "cccc", "dddd", "eeee"];
        let p = Packer::array(12, 10, Oversize::Alone);
        let bodies = p
            .pack(items.len(), |i, out| {
                out.extend_from_slice(items[i].as_bytes())
            })
            .unwrap();
        let texts: Vec<_> = bodies
            .iter()
            .map(|b| String::from_utf8(b.bytes.clone()).unwrap())
            .collect();
        assert_eq!(texts, ["[aaaa,bbbb]", "[cccc,dddd]", "[eeee]"]);
        assert!(bodies.iter().all(|b| b.bytes.len() <= 12));

        let p = Packer::lines(1000, 2);
        let bodies = p
            .pack(items.len(), |i, out| {
                out.extend_from_slice(items[i].as_bytes());
                out.push(b'\n')
            })
            .unwrap();
        assert_eq!(
            bodies.iter().map(|b| b.events).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert_eq!(bodies[0].bytes, b"aaaa\nbbbb\n");
    }

    #[test]
    fn packer_oversize_goes_alone_or_fails() {
        let items = ["a", "bbbbbbbbbbbbbbbbbbbb", "c"];
        let enc = |i: usize, out: &mut Vec<u8>| out.extend_from_slice(items[i].as_bytes());
        let bodies = Packer::array(10, 10, Oversize::Alone).pack(3, enc).unwrap();
        assert_eq!(bodies.len(), 3);
        assert_eq!(bodies[1].bytes, b"[bbbbbbbbbbbbbbbbbbbb]");
        let e = Packer::array(10, 10, Oversize::Fail).pack(3, enc).err();
        assert_eq!(e, Some((1, 22)));
    }
}
