//! How the simulator writes one event: the field writers (JSON as the API sends it, or syslog
//! key=value text), escaping, timestamps, ids, and the word lists events are drawn from. Pure
//! functions of their inputs, so a seed always renders the same bytes.

use super::events::mix;

/// Sink of one event's fields: JSON or syslog key=value.
pub(super) trait Writer {
    fn str(&mut self, k: &[u8], v: &[u8]);
    /// `v` as it is: JSON text (a number) in JSON, a value like any other in syslog.
    fn raw(&mut self, k: &[u8], v: &[u8]);
    fn parts(&mut self, k: &[u8], v: &[&str]);
    fn num(&mut self, k: &[u8], v: u64);
    fn null(&mut self, k: &[u8]);
    fn ts(&mut self, k: &[u8], ms: i64);
    fn list_start(&mut self, k: &[u8]);
    fn item(&mut self, v: &[&str]);
    fn list_end(&mut self);
    fn obj_start(&mut self);
    fn obj_end(&mut self);
}

pub(super) struct Json<'a> {
    pub(super) out: &'a mut Vec<u8>,
    pub(super) comma: bool,
}

impl Json<'_> {
    fn key(&mut self, k: &[u8]) {
        if self.comma {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(k);
        self.out.extend_from_slice(b"\":");
        self.comma = true;
    }

    fn sep(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
        self.comma = true;
    }
}

/// Appends `v` JSON-escaped (without quotes).
pub(crate) fn escape_json(out: &mut Vec<u8>, v: &[u8]) {
    // Bytes that need escaping: `"`, `\\` and control characters.
    const NEEDS: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 0x20 {
            t[i] = true;
            i += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t
    };
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        if !NEEDS[b as usize] {
            continue;
        }
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\t' => b"\\t",
            b'\r' => b"\\r",
            0..=0x1f => b"\\u0000",
            _ => continue,
        };
        out.extend_from_slice(&v[start..i]);
        if esc == b"\\u0000" {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&v[start..]);
}

impl Writer for Json<'_> {
    fn str(&mut self, k: &[u8], v: &[u8]) {
        self.key(k);
        self.out.push(b'"');
        escape_json(self.out, v);
        self.out.push(b'"');
    }
    fn raw(&mut self, k: &[u8], v: &[u8]) {
        self.key(k);
        self.out.extend_from_slice(v);
    }
    fn parts(&mut self, k: &[u8], v: &[&str]) {
        self.key(k);
        self.item_inner(v);
    }
    fn num(&mut self, k: &[u8], v: u64) {
        self.key(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    fn null(&mut self, k: &[u8]) {
        self.key(k);
        self.out.extend_from_slice(b"null");
    }
    fn ts(&mut self, k: &[u8], ms: i64) {
        self.key(k);
        self.out.push(b'"');
        push_ts(self.out, ms);
        self.out.push(b'"');
    }
    fn list_start(&mut self, k: &[u8]) {
        self.key(k);
        self.out.push(b'[');
        self.comma = false;
    }
    fn item(&mut self, v: &[&str]) {
        self.sep();
        self.item_inner(v);
    }
    fn list_end(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }
    fn obj_start(&mut self) {
        self.sep();
        self.out.push(b'{');
        self.comma = false;
    }
    fn obj_end(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }
}

impl Json<'_> {
    fn item_inner(&mut self, v: &[&str]) {
        self.out.push(b'"');
        for p in v {
            escape_json(self.out, p.as_bytes());
        }
        self.out.push(b'"');
    }
}

/// Syslog structured-ish text: ` key="value"` pairs, lists joined with commas, nested objects
/// flattened (their keys repeat once per object).
pub(super) struct Syslog<'a> {
    pub(super) out: &'a mut Vec<u8>,
}

pub(super) fn escape_syslog(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        match b {
            b'"' | b'\\' | b']' => {
                out.push(b'\\');
                out.push(b);
            }
            b'\n' | b'\r' | b'\t' => out.push(b' '),
            _ => out.push(b),
        }
    }
}

impl Syslog<'_> {
    fn key(&mut self, k: &[u8]) {
        self.out.push(b' ');
        self.out.extend_from_slice(k);
        self.out.extend_from_slice(b"=\"");
    }
}

impl Writer for Syslog<'_> {
    fn str(&mut self, k: &[u8], v: &[u8]) {
        self.key(k);
        escape_syslog(self.out, v);
        self.out.push(b'"');
    }
    fn raw(&mut self, k: &[u8], v: &[u8]) {
        self.str(k, v);
    }
    fn parts(&mut self, k: &[u8], v: &[&str]) {
        self.key(k);
        for p in v {
            escape_syslog(self.out, p.as_bytes());
        }
        self.out.push(b'"');
    }
    fn num(&mut self, k: &[u8], v: u64) {
        self.key(k);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self.out.push(b'"');
    }
    fn null(&mut self, k: &[u8]) {
        self.key(k);
        self.out.push(b'"');
    }
    fn ts(&mut self, k: &[u8], ms: i64) {
        self.key(k);
        push_ts(self.out, ms);
        self.out.push(b'"');
    }
    fn list_start(&mut self, k: &[u8]) {
        self.key(k);
    }
    fn item(&mut self, v: &[&str]) {
        if self.out.last() != Some(&b'"') {
            self.out.push(b',');
        }
        for p in v {
            escape_syslog(self.out, p.as_bytes());
        }
    }
    fn list_end(&mut self) {
        self.out.push(b'"');
    }
    fn obj_start(&mut self) {
        // Objects inside a list: close the list's quote, their fields follow as pairs.
        if self.out.last() == Some(&b'"') {
            self.out.push(b'"');
        }
    }
    fn obj_end(&mut self) {
        self.out.extend_from_slice(b" end=\"");
    }
}

/// Appends `ms` (since the epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn push_ts(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let put = |b: &mut [u8; 24], at: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut b, 0, 4, y);
    put(&mut b, 5, 2, m);
    put(&mut b, 8, 2, d);
    put(&mut b, 11, 2, in_day / 3_600_000);
    put(&mut b, 14, 2, in_day / 60_000 % 60);
    put(&mut b, 17, 2, in_day / 1000 % 60);
    put(&mut b, 20, 3, in_day % 1000);
    out.extend_from_slice(&b);
}

pub(super) const HEX: &[u8; 16] = b"0123456789abcdef";

pub(super) fn hex16(buf: &mut [u8; 16], v: u64) -> &[u8] {
    for (i, c) in buf.iter_mut().enumerate() {
        *c = HEX[((v >> (60 - 4 * i)) & 15) as usize];
    }
    &buf[..]
}

pub(super) fn hex64(buf: &mut [u8; 64], a: u64, b: u64) -> &[u8] {
    let words = [a, b, mix(a), mix(b)];
    for (w, chunk) in words.iter().zip(buf.chunks_mut(16)) {
        for (i, c) in chunk.iter_mut().enumerate() {
            *c = HEX[((w >> (60 - 4 * i)) & 15) as usize];
        }
    }
    &buf[..]
}

pub(super) fn uuid(buf: &mut [u8; 40], a: u64, b: u64) -> &[u8] {
    let mut h = [0u8; 64];
    hex64(&mut h, a, b);
    let mut at = 0;
    for (i, &c) in h[..32].iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            buf[at] = b'-';
            at += 1;
        }
        buf[at] = c;
        at += 1;
    }
    &buf[..at]
}

pub(super) fn alnum(buf: &mut [u8; 14], a: u64, b: u64) {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = u128::from(a) << 64 | u128::from(b);
    for c in buf.iter_mut() {
        *c = A[(x % A.len() as u128) as usize];
        x /= A.len() as u128;
    }
}

pub(super) fn ipv4(buf: &mut [u8; 16], v: u64) -> &[u8] {
    let mut len = 0;
    for i in 0..4 {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let octet = ((v >> (8 * i)) & 0xff) as u8;
        let mut f = itoa::Buffer::new();
        let s = f.format(octet).as_bytes();
        buf[len..len + s.len()].copy_from_slice(s);
        len += s.len();
    }
    &buf[..len]
}

pub(super) const SENDER_NAMES: &[&str] = &[
    "billing",
    "no-reply",
    "security",
    "hr.department",
    "ceo.office",
    "jürgen.müller",
    "support",
    "invoice",
    "dhl-notify",
    "it-helpdesk",
];
pub(super) const SENDER_DOMAINS: &[&str] = &[
    "secure-bank-login.com",
    "invoices.example.net",
    "dhl-tracking.info",
    "microsoft-365.support",
    "überweisung-sicher.de",
    "paypa1.com",
    "mail.evil.example",
];
pub(super) const DISPLAY_NAMES: &[&str] = &[
    "Accounts Payable",
    "IT \\\\ Helpdesk",
    "Jürgen Müller",
    "CEO Office",
    "DHL Express 📦",
    "Microsoft 365",
    "\\\"Security\\\" Team",
];
pub(super) const RCPT_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "olivia", "peggy", "sybil", "trent", "zoë", "björn", "amélie",
];
pub(super) const SUBJECTS: &[&str] = &[
    "Your invoice is ready",
    "Überweisung bestätigen – dringend",
    "RE: \"Urgent\" payment request",
    "Scan saved to C:\\Users\\Public\\scan.pdf",
    "📦 Your parcel is waiting",
    "Password expires today ⚠️",
    "Q3 results\tconfidential",
    "Réunion : compte-rendu",
    "Ваш счёт на оплату",
    "Meeting notes",
    "DocuSign: please review and sign",
    "Voicemail from +1 (555) 010-0199",
];
pub(super) const URLS: &[&str] = &[
    "https://secure-bank-login.com/verify?id=123&user=alice",
    "https://urldefense.com/v3/__https://evil.example/a__;!!Abc123!xyz$",
    "http://überweisung-sicher.de/konto/bestätigen",
    "https://evil.example/path\\to\\\"payload\".exe",
    "https://docs.example.net/share/📄?x=1",
    "https://login.microsoft-365.support/common/oauth2/authorize?client_id=0000",
];
pub(super) const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
    "curl/8.4.0",
];
pub(super) const MODULES: &[&str] = &[
    "spf",
    "dkimv",
    "dmarc",
    "pdr",
    "sandbox",
    "urldefense",
    "av",
    "spam",
    "zerohour",
    "impostor",
];
pub(super) const XMAILERS: &[&str] = &[
    "Microsoft Outlook 16.0",
    "Apple Mail (2.3731.700.6)",
    "PHPMailer 6.8.0 (https://github.com/PHPMailer/PHPMailer)",
    "",
];
pub(super) const PARTS: &[(&str, &str)] = &[
    ("text.txt", "text/plain"),
    ("text.html", "text/html"),
    ("invoice_2026.pdf", "application/pdf"),
    (
        "Überweisung.docm",
        "application/vnd.ms-word.document.macroEnabled.12",
    ),
    ("scan \"final\".zip", "application/zip"),
    ("logo.png", "image/png"),
];
pub(super) const SANDBOX: &[&str] = &[
    "THREAT",
    "CLEAN",
    "NOT_SUPPORTED",
    "UNSUPPORTED",
    "PREVIOUSLY_SCANNED",
];
