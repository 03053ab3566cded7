//! Proofpoint URL Defense rewritten links, decoded locally: no API call and no quota
//! (`POST /v2/url/decode` costs 1,800 a day and is not needed).
//!
//! Three generations of rewriting, each recognised by its prefix
//! (`https://urldefense.proofpoint.com/vN/` or `https://urldefense.com/vN/`):
//! - v1 `…/v1/url?u=URL&k=…`: `URL` percent-decoded, then HTML-unescaped;
//! - v2 `…/v2/url?u=URL&d=…` (or `&c=`): `-` → `%`, `_` → `/`, percent-decoded, HTML-unescaped;
//! - v3 `…/v3/__URL__;B64!!…`: `URL` percent-decoded, then each `*` takes the next byte of the
//!   URL-safe base64 `B64`, and each `**X` the next run of bytes whose length `X` codes
//!   (`A` = 2 … `_` = 65 in the URL-safe alphabet).
//!
//! The invariant it keeps: decoding works on **bytes** throughout (v3 runs count UTF-8 bytes, not
//! characters; Proofpoint's own decoder gets non-ASCII runs wrong), and the result must be valid
//! UTF-8; anything that does not decode exactly is an error naming what is wrong, never a guess.
//! A URL that is not a URL Defense link is returned unchanged.
//!
//! A decoded link says whatever its sender wrote, line breaks and terminal escape sequences
//! included. [`escape_for_display`] is what a decoded URL goes through before it is printed: it
//! percent-encodes the characters a terminal or a line-based script would act on instead of
//! showing, so one URL stays one line and prints as text.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Why a URL Defense link could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown URL Defense version {0}")]
    UnknownVersion(String),
    #[error("no `u=` parameter ending in `{0}`")]
    NoParameter(&'static str),
    #[error("no `__URL__;` part")]
    NoV3Url,
    #[error("the replaced characters are not URL-safe base64")]
    BadBase64,
    #[error("the URL has more `*` placeholders than replaced bytes")]
    TooFewBytes,
    #[error("`**` at the end of the URL has no run length")]
    NoRunLength,
    #[error("the decoded URL is not valid UTF-8")]
    NotUtf8,
}

/// The URL Defense version of `url`, when it is a rewritten link at all.
fn version(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let rest = rest
        .strip_prefix("urldefense.proofpoint.com/")
        .or_else(|| rest.strip_prefix("urldefense.com/"))?;
    let (version, _) = rest.split_once('/')?;
    let digits = version.strip_prefix('v')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(version)
}

/// Decodes a URL Defense link; any other URL comes back unchanged.
pub fn decode(url: &str) -> Result<Cow<'_, str>, DecodeError> {
    let Some(v) = version(url) else {
        return Ok(Cow::Borrowed(url));
    };
    let decoded = match v {
        "v1" => decode_query(url, "&k=", false)?,
        "v2" => decode_query(url, "&d=", true)?,
        "v3" => decode_v3(url)?,
        other => return Err(DecodeError::UnknownVersion(other.to_owned())),
    };
    Ok(Cow::Owned(decoded))
}

/// v1 and v2: the `u=` parameter up to `end` (v2 also accepts `&c=`).
fn decode_query(url: &str, end: &'static str, v2: bool) -> Result<String, DecodeError> {
    let (_, query) = url.split_once("?").ok_or(DecodeError::NoParameter(end))?;
    let start = if let Some(u) = query.strip_prefix("u=") {
        u
    } else {
        let at = query.find("&u=").ok_or(DecodeError::NoParameter(end))?;
        &query[at + 3..]
    };
    let stop = match (start.find(end), v2.then(|| start.find("&c=")).flatten()) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return Err(DecodeError::NoParameter(end)),
    };
    let encoded = &start[..stop];
    if encoded.is_empty() {
        return Err(DecodeError::NoParameter(end));
    }
    let encoded: Cow<str> = if v2 {
        Cow::Owned(
            encoded
                .chars()
                .map(|c| match c {
                    '-' => '%',
                    '_' => '/',
                    c => c,
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(encoded)
    };
    let bytes = percent_decode(encoded.as_bytes());
    let text = String::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    Ok(html_unescape(&text))
}

/// URL-safe base64, with or without padding, as the v3 replaced-bytes part is written.
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The run length a `**X` token codes: `A` = 2 … `_` = 65.
fn run_length(x: u8) -> Option<usize> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ALPHABET.iter().position(|&a| a == x).map(|i| i + 2)
}

fn decode_v3(url: &str) -> Result<String, DecodeError> {
    let (_, after) = url.split_once("/v3/__").ok_or(DecodeError::NoV3Url)?;
    let (inner, rest) = after.split_once("__;").ok_or(DecodeError::NoV3Url)?;
    if inner.is_empty() {
        return Err(DecodeError::NoV3Url);
    }
    let b64 = rest.split_once('!').map_or(rest, |(b, _)| b);
    let replaced = URL_SAFE_ANY_PAD
        .decode(b64)
        .map_err(|_| DecodeError::BadBase64)?;
    // `https:/host` (one slash, as some mail clients leave it) is `https://host`.
    let inner = single_slash_fixed(inner);
    let encoded = percent_decode(inner.as_bytes());
    let mut out = Vec::with_capacity(encoded.len() + replaced.len());
    let mut next = replaced.iter().copied();
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] != b'*' {
            out.push(encoded[i]);
            i += 1;
            continue;
        }
        if encoded.get(i + 1) == Some(&b'*') {
            let x = *encoded.get(i + 2).ok_or(DecodeError::NoRunLength)?;
            // Like Proofpoint's own decoder, a character outside the alphabet is not a run: the
            // first `*` takes one byte and the scan goes on from the second.
            if let Some(n) = run_length(x) {
                for _ in 0..n {
                    out.push(next.next().ok_or(DecodeError::TooFewBytes)?);
                }
                i += 3;
                continue;
            }
        }
        out.push(next.next().ok_or(DecodeError::TooFewBytes)?);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

/// `scheme:/rest` with a single slash gets its second one back.
fn single_slash_fixed(url: &str) -> Cow<'_, str> {
    if let Some(colon) = url.find(":/") {
        let scheme = &url[..colon];
        let rest = &url[colon + 2..];
        let scheme_ok = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'));
        if scheme_ok && rest.len() >= 2 && !rest.starts_with('/') {
            return Cow::Owned(format!("{scheme}://{rest}"));
        }
    }
    Cow::Borrowed(url)
}

/// `%XX` → the byte; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The HTML character references URL Defense leaves in v1 and v2 links: the five named XML
/// ones and numeric `&#N;` / `&#xH;`. Anything else stays as it is.
fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[1..].find(';').map(|i| i + 1).filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..semi];
        let c = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => name.strip_prefix('#').and_then(|n| {
                let code = match n.strip_prefix(['x', 'X']) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => n.parse().ok(),
                };
                code.and_then(char::from_u32)
            }),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `c` is acted on rather than shown by a terminal or a line-based reader: a control
/// character (U+0000–U+001F, U+007F–U+009F: line breaks, ESC, NUL, the C1 CSI), the line and
/// paragraph separators (U+2028, U+2029), or a bidirectional formatting character (U+061C,
/// U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which reorders how the rest of a line shows.
fn acted_on(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `url` with every character that a terminal or a line-based script would act on (see
/// [`acted_on`]) percent-encoded, byte by byte of its UTF-8, as a browser sends it: a line break
/// becomes `%0A`, ESC `%1B`, NUL `%00`, U+202E `%E2%80%AE`. Everything else, other non-ASCII
/// letters and a `%` already there included, is left as it is, so the result is the same URL on
/// one line.
pub fn escape_for_display(url: &str) -> Cow<'_, str> {
    if !url.chars().any(acted_on) {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 8);
    for c in url.chars() {
        if acted_on(c) {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_for_display_percent_encodes_what_a_terminal_would_act_on() {
        assert_eq!(
            escape_for_display("https://x.test/a\nb\x1b[31mc\0d\re\tf\u{7f}\u{9b}"),
            "https://x.test/a%0Ab%1B[31mc%00d%0De%09f%7F%C2%9B"
        );
        assert_eq!(
            escape_for_display("https://x.test/\u{202e}gpj.exe\u{2028}x\u{2066}"),
            "https://x.test/%E2%80%AEgpj.exe%E2%80%A8x%E2%81%A6"
        );
        // Letters of any script, and `%` escapes already there, stay as they are.
        let plain = "https://example.com/café/日本?q=%0A&x=1";
        assert!(matches!(escape_for_display(plain), Cow::Borrowed(p) if p == plain));
    }

    fn ok(url: &str) -> String {
        decode(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .into_owned()
    }

    #[test]
    fn v3_from_a_public_mailing_list_archive() {
        // linux-scsi on lore.kernel.org, as it reached a Proofpoint-protected mailbox: the `%` of
        // `%2F` was replaced by `*`, and `JQ` is base64 for `%`.
        let url = "https://urldefense.com/v3/__https://lore.kernel.org/linux-scsi/Ykqg0kr0F*2Fyzk2XW@infradead.org/__;JQ!!ACWV5N9M2RV99hQ!ZxHnW5z2ZUl3Xh4dCQ3s6bwrR3tUwV1f8j7u2NvE2f2kKbmU$";
        assert_eq!(
            ok(url),
            "https://lore.kernel.org/linux-scsi/Ykqg0kr0F%2Fyzk2XW@infradead.org/"
        );
    }

    #[test]
    fn v3_proofpoint_sample_replaces_a_plus() {
        let url = "https://urldefense.com/v3/__https://google.com:443/search?q=a*test&gs=ps__;Kw!-612Flbf0JvQ3kNJkRi5Jg!Ue6tQudNKaShHg93trcdjqDP8se2ySE65jyCIe2K1D_uNjZ1Lnf6YLQERujngZv9UWf66ujQIQ$";
        assert_eq!(ok(url), "https://google.com:443/search?q=a+test&gs=ps");
    }

    #[test]
    fn v3_with_nothing_replaced_and_a_single_slash() {
        let url = "https://urldefense.com/v3/__https:/example.com/path/page.html__;!!AbC!dEf$";
        assert_eq!(ok(url), "https://example.com/path/page.html");
    }

    #[test]
    fn v3_runs_count_utf8_bytes() {
        // "é" is 2 bytes (`**A`), "日本" 6 bytes (`**E`), then a single `*` for "#".
        let replaced = "é日本#";
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(replaced);
        let url = format!(
            "https://urldefense.com/v3/__https://example.com/caf**A/**E/page*top__;{b64}!!x!y$"
        );
        assert_eq!(ok(&url), "https://example.com/café/日本/page#top");
        // The literal form, as a rewritten link carries it.
        let url = "https://urldefense.com/v3/__https://example.com/caf**A/**E/page*top__;w6nml6XmnKwj!!x!y$";
        assert_eq!(ok(url), "https://example.com/café/日本/page#top");
    }

    #[test]
    fn v3_run_split_by_characters_is_not_utf8() {
        // One `*` per character (Proofpoint's decoder's reading) takes one byte of "é" only.
        let url = "https://urldefense.com/v3/__https://example.com/caf*__;w6k!!x$";
        assert_eq!(decode(url), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn v3_longest_run_is_65_bytes() {
        let run = "a".repeat(65);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&run);
        let url = format!("https://urldefense.com/v3/__https://x.test/**___;{b64}!!x$");
        assert_eq!(ok(&url), format!("https://x.test/{run}"));
    }

    #[test]
    fn v3_percent_escapes_are_decoded_before_substitution() {
        let url = "https://urldefense.com/v3/__https://x.test/a%20b*c__;Iw!!x$";
        assert_eq!(ok(url), "https://x.test/a b#c");
    }

    #[test]
    fn v2_from_a_marketing_mail() {
        let url = "https://urldefense.proofpoint.com/v2/url?u=http-3A__links.mkt3337.com_ctt-3Fkn-3D3-26ms-3DMzQ3OTg3MDQS1-26r-3DMzkxNzk3NDkwMDA0S0-26b-3D0-26j-3DMTMwMjA1ODYzNQS2-26mt-3D1-26rt-3D0&d=DwMFaQ&c=Vxt5e0Osvvt2gflwSlsJ5DmPGcPvTRKLJyp031rXjhg&r=MujLDFBJstxoxZI_GKbsW7wxGM7nnIK__qZvVy6j9Wc&m=QJGhloAyfD0UZ6n8r6y9dF-khNKqvRAIWDRU_K65xPI&s=ew-rOtBFjiX1Hgv71XQJ5BEgl9TPaoWRm_Xp9Nuo8bk&e=";
        assert_eq!(
            ok(url),
            "http://links.mkt3337.com/ctt?kn=3&ms=MzQ3OTg3MDQS1&r=MzkxNzk3NDkwMDA0S0&b=0&j=MTMwMjA1ODYzNQS2&mt=1&rt=0"
        );
    }

    #[test]
    fn v2_html_entities_and_non_ascii() {
        let url = "https://urldefense.proofpoint.com/v2/url?u=https-3A__example.com_caf-C3-A9-3Fa-3D1-26amp-3Bb-3D2&d=DwICaQ&c=x&r=y&m=z&s=w&e=";
        assert_eq!(ok(url), "https://example.com/café?a=1&b=2");
    }

    #[test]
    fn v1_from_an_old_mail() {
        let url = "https://urldefense.proofpoint.com/v1/url?u=http://www.bouncycastle.org/&k=oIvRg1%2BdGAgOoM1BIlLLqw%3D%3D%0A&r=IKM5u8%2B%2F%2Fi8EBhWOS%2BqGbTqCC%2BrMqWI%2FVfEAEsQO%2F0Y%3D%0A&m=Ww6iaHO73mDQpPQwOwfLfN8WMapqHyvtu8jM8SjqmVQ%3D%0A&s=d3583cfa53dade97025bc6274c89c2f0b0d0ba4a1d4df5f4a5b3e9d9a1f7b1a4";
        assert_eq!(ok(url), "http://www.bouncycastle.org/");
        let url = "https://urldefense.proofpoint.com/v1/url?u=http://example.com/a%3Fb%3D1%26amp%3Bc%3D2&k=abc";
        assert_eq!(ok(url), "http://example.com/a?b=1&c=2");
    }

    #[test]
    fn other_urls_come_back_unchanged() {
        for url in [
            "https://example.com/v3/__x__;!!",
            "https://urldefense.com/",
            "https://urldefense.com/status",
            "mailto:someone@example.com",
            "not a url at all",
            "",
        ] {
            assert!(
                matches!(decode(url), Ok(Cow::Borrowed(u)) if u == url),
                "{url}"
            );
        }
    }

    #[test]
    fn malformed_links_say_what_is_wrong() {
        let cases = [
            (
                "https://urldefense.com/v4/__x__;!!",
                DecodeError::UnknownVersion("v4".into()),
            ),
            (
                "https://urldefense.proofpoint.com/v1/url?u=http://x.test/",
                DecodeError::NoParameter("&k="),
            ),
            (
                "https://urldefense.proofpoint.com/v2/url?x=1",
                DecodeError::NoParameter("&d="),
            ),
            (
                "https://urldefense.com/v3/__https://x.test/",
                DecodeError::NoV3Url,
            ),
            (
                "https://urldefense.com/v3/__https://x.test/*__;!!x$",
                DecodeError::TooFewBytes,
            ),
            (
                "https://urldefense.com/v3/__https://x.test/**B__;JQ!!x$",
                DecodeError::TooFewBytes,
            ),
            (
                "https://urldefense.com/v3/__https://x.test/*__;J$Q!!x$",
                DecodeError::BadBase64,
            ),
            (
                "https://urldefense.com/v3/__https://x.test/**__;JQ!!x$",
                DecodeError::NoRunLength,
            ),
        ];
        for (url, want) in cases {
            assert_eq!(decode(url), Err(want), "{url}");
        }
    }

    #[test]
    fn html_unescape_leaves_unknown_references() {
        assert_eq!(html_unescape("a&amp;b&#47;c&#x2F;d"), "a&b/c/d");
        assert_eq!(html_unescape("a&nbsp;b&c"), "a&nbsp;b&c");
        assert_eq!(html_unescape("&&amp;"), "&&");
    }

    #[test]
    fn percent_decode_keeps_bad_escapes() {
        assert_eq!(percent_decode(b"a%2Fb%zz%4"), b"a/b%zz%4");
        assert_eq!(percent_decode(b"%41"), b"A");
    }
}
