//! Deterministic TAP SIEM event generator.
//!
//! Every minute of every tenant is generated on its own: minute `m` draws its item count and one
//! seed per item from a PRNG seeded by `(seed, principal, m)`. An *item* is one message (one event
//! per recipient, all sharing the GUID) or one click. The cheap [`Item`] header (kind, status,
//! threat type, times) is decided first; the payload is rendered only for events that pass the
//! request's filters, straight into a reused `Vec<u8>`.
//!
//! Re-emissions: after its originals, minute `m` holds a few items that re-emit an original item
//! of an earlier minute (10 min to 6 h before). They are rebuilt from that minute's item seed, so
//! every message field is identical, with a new `threatStatus` and a `threatTime` inside minute
//! `m`; their API time is that new `threatTime`.
//!
//! Threats and campaigns: each tenant has [`THREATS_PER_TYPE`] threats of each threat type and
//! [`CAMPAIGNS`] campaigns, derived from its key; an event draws its `threatID` (and the threat's
//! URL and attachment hash) from that pool and, when it names a campaign, the campaign of its
//! threat. So many events share a threat, as in real traffic, and the simulator's threat and
//! campaign endpoints ([`super::intel`]) know exactly the ids its events carry.

use super::render::*;
use crate::api::ThreatStatus;
use crate::event::EventKind;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Distinct threats of each threat type per tenant.
pub(crate) const THREATS_PER_TYPE: u64 = 16;
/// Distinct campaigns per tenant; threat `i` (over all types) belongs to campaign `i % CAMPAIGNS`.
pub(crate) const CAMPAIGNS: u64 = 8;
pub(super) const MINUTE_MS: i64 = 60_000;

/// The splitmix64 finaliser: a good 64-bit mixer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A splitmix64 generator.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `x` rounded up or down at random so that the mean is `x`.
    fn round(&mut self, x: f64) -> u64 {
        let floor = x.floor();
        floor as u64 + u64::from(self.unit() < x - floor)
    }
}

/// FNV-1a, used to fold a principal into the seed.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// A threat's type, as sent in `threatType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreatType {
    Url,
    Attachment,
    MessageText,
}

impl ThreatType {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreatType::Url => "url",
            ThreatType::Attachment => "attachment",
            ThreatType::MessageText => "messageText",
        }
    }

    pub fn parse(s: &str) -> Option<ThreatType> {
        [Self::Url, Self::Attachment, Self::MessageText]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// The cheap header of one item: everything the filters need, nothing that costs to render.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Item {
    /// Seeds the payload; identical for an original and its re-emissions.
    pub seed: u64,
    pub kind: EventKind,
    pub recipients: u8,
    /// `messageTime` / `clickTime`, ms since the epoch.
    pub msg_ms: i64,
    pub threat_ms: i64,
    /// The API time: the later of `msg_ms` and `threat_ms`.
    pub api_ms: i64,
    pub status: ThreatStatus,
    pub threat_type: ThreatType,
    /// Seeds the visibility delays; differs between an original and its re-emissions.
    pub vis_seed: u64,
    /// Essentials: the organisation the item belongs to, an index into the tenant's orgs (0: the
    /// key's own organisation, then its child organisations). Always 0 for TAP.
    pub org: u8,
}

/// One tenant's event source.
#[derive(Clone, Debug)]
pub(crate) struct TenantGen {
    key: u64,
    /// Mean original items per minute.
    items_per_minute: f64,
    max_delay_ms: u64,
    /// A long tail of late publication: `(per mille, longest delay in ms)`; see
    /// [`TenantGen::long_tail`].
    long_tail: Option<(u64, u64)>,
    /// The tenant's own mail domain, e.g. `corp417.example`.
    domain: String,
    cluster: String,
    /// Essentials: the `customerEid`s of the key's own organisation, then its children. `None`
    /// renders TAP events.
    orgs: Option<std::sync::Arc<[String]>>,
    /// The index in `orgs` from which the `customerEid` is written bare (as JSON text, not a
    /// string).
    bare_from: usize,
}

/// What to render: the request's filters.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub kinds: [bool; 4],
    pub statuses: [bool; 3],
    /// `None`: every threat type.
    pub threat_types: Option<[bool; 3]>,
    /// Essentials: the key's own organisation's items (`ownData`), the child organisations'
    /// (`customerData`). TAP items are all "own".
    pub orgs: [bool; 2],
    pub start_ms: i64,
    pub end_ms: i64,
    /// Only events visible at this instant (ms), or every event when `None`.
    pub visible_at_ms: Option<i64>,
}

fn status_index(s: ThreatStatus) -> usize {
    match s {
        ThreatStatus::Active => 0,
        ThreatStatus::Cleared => 1,
        ThreatStatus::FalsePositive => 2,
    }
}

fn type_index(t: ThreatType) -> usize {
    match t {
        ThreatType::Url => 0,
        ThreatType::Attachment => 1,
        ThreatType::MessageText => 2,
    }
}

impl Filter {
    /// Whether the item (all its events) passes the kind, status and type filters.
    pub fn item_matches(&self, it: &Item) -> bool {
        self.kinds[it.kind.index()]
            && self.orgs[usize::from(it.org != 0)]
            && self.statuses[status_index(it.status)]
            && self
                .threat_types
                .map_or(true, |t| t[type_index(it.threat_type)])
            && it.api_ms >= self.start_ms
            && it.api_ms <= self.end_ms
    }
}

impl TenantGen {
    pub(crate) fn new(seed: u64, principal: &str, events_per_hour: u32, max_delay_ms: u64) -> Self {
        let key = mix(seed ^ mix(fnv(principal)));
        // Events per item: clicks 1, messages 1.4 on average (1 in 5 goes to 2-4 people);
        // 62.5 % of items are messages, and re-emissions add about 4 %.
        let items_per_minute = f64::from(events_per_hour) / 60.0 / 1.25 / 1.04;
        TenantGen {
            key,
            items_per_minute,
            max_delay_ms,
            long_tail: None,
            domain: format!("corp{}.example", key % 1000),
            cluster: format!("pharmtech{}_hosted", key % 97),
            orgs: None,
            bare_from: usize::MAX,
        }
    }

    /// The same source as an Essentials key of organisation `own` with child organisations
    /// `customers` (`customerEid`s): each item belongs to one of them, and events carry the
    /// Essentials fields and spellings.
    pub(crate) fn essentials(mut self, own: &str, customers: &[String], bare: &[String]) -> Self {
        let mut orgs = vec![own.to_string()];
        orgs.extend(customers.iter().cloned());
        self.bare_from = orgs.len();
        orgs.extend(bare.iter().cloned());
        self.orgs = Some(orgs.into());
        self
    }

    /// A long tail of late publication: `per_mille` of the events become queryable between the
    /// usual longest delay and `max_ms` after their API time. Drawn apart from the usual delays,
    /// so every other event keeps the delay it has without the tail.
    pub(crate) fn long_tail(mut self, per_mille: u64, max_ms: u64) -> Self {
        self.long_tail = Some((per_mille.min(1000), max_ms));
        self
    }

    /// The tenant's key (from the seed and principal), for generators beside this one.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Whether this source serves the Essentials API.
    pub(crate) fn is_essentials(&self) -> bool {
        self.orgs.is_some()
    }

    /// Threat `n` (taken modulo [`THREATS_PER_TYPE`]) of type `t`: its index over all types and
    /// the two words its id, URL and attachment hash derive from.
    pub(crate) fn threat(&self, t: ThreatType, n: u64) -> (u64, (u64, u64)) {
        let i = type_index(t) as u64 * THREATS_PER_TYPE + n % THREATS_PER_TYPE;
        (i, self.threat_words(i))
    }

    /// The words of threat `i` (`0..3 * THREATS_PER_TYPE`, see [`TenantGen::threat`]).
    pub(crate) fn threat_words(&self, i: u64) -> (u64, u64) {
        (
            mix(self.key ^ mix(0x5448_0000 + i)),
            mix(self.key ^ mix(0x5449_0000 + i)),
        )
    }

    /// The words campaign `c` (`0..CAMPAIGNS`) derives its id from.
    pub(crate) fn campaign_words(&self, c: u64) -> (u64, u64) {
        (
            mix(self.key ^ mix(0x4341_0000 + c)),
            mix(self.key ^ mix(0x4342_0000 + c)),
        )
    }

    fn minute_rng(&self, minute: i64) -> Rng {
        Rng::new(mix(self.key ^ mix(minute as u64)))
    }

    /// The number of original items of `minute`, and the PRNG positioned after drawing it.
    fn originals(&self, minute: i64) -> (Rng, u64) {
        let mut rng = self.minute_rng(minute);
        let factor = 0.5 + rng.unit();
        let n = rng.round(self.items_per_minute * factor);
        (rng, n)
    }

    fn original_item(&self, minute: i64, seed: u64) -> Item {
        let mut r = Rng::new(seed);
        let roll = r.below(1000);
        let kind = match roll {
            0..=356 => EventKind::MessagesDelivered,
            357..=624 => EventKind::MessagesBlocked,
            625..=812 => EventKind::ClicksPermitted,
            _ => EventKind::ClicksBlocked,
        };
        let recipients = if !kind.is_click() && r.chance(200) {
            2 + r.below(3) as u8
        } else {
            1
        };
        let api_ms = minute * MINUTE_MS
            + if r.chance(50) {
                0
            } else {
                r.below(MINUTE_MS as u64) as i64
            };
        let (msg_ms, threat_ms) = if r.chance(500) {
            (api_ms, api_ms - r.below(600_000) as i64)
        } else {
            (api_ms - r.below(120_000) as i64, api_ms)
        };
        let status = match r.below(1000) {
            0..=849 => ThreatStatus::Active,
            850..=949 => ThreatStatus::Cleared,
            _ => ThreatStatus::FalsePositive,
        };
        let threat_type = if kind.is_click() {
            ThreatType::Url
        } else {
            match r.below(1000) {
                0..=549 => ThreatType::Url,
                550..=899 => ThreatType::Attachment,
                _ => ThreatType::MessageText,
            }
        };
        Item {
            seed,
            kind,
            recipients,
            msg_ms,
            threat_ms,
            api_ms,
            status,
            threat_type,
            vis_seed: mix(seed ^ 0x5649_5349),
            org: self
                .orgs
                .as_ref()
                .map_or(0, |o| (mix(seed ^ 0x004f_5247) % o.len() as u64) as u8),
        }
    }

    /// Every item of `minute` (originals, then re-emissions) into `out`, which is cleared first.
    pub(crate) fn minute_items(&self, minute: i64, out: &mut Vec<Item>) {
        out.clear();
        let (mut rng, n) = self.originals(minute);
        for j in 0..n {
            let seed = mix(rng.0 ^ (j + 1).wrapping_mul(GOLDEN));
            out.push(self.original_item(minute, seed));
        }
        // Advance past the item seeds deterministically (they were derived, not drawn).
        let n_re = rng.round(self.items_per_minute * 0.04);
        for _ in 0..n_re {
            let back = 10 + rng.below(351) as i64;
            let origin = minute - back;
            let (orng, on) = self.originals(origin);
            let pick = rng.next_u64();
            let new_status_roll = rng.below(1000);
            let on_minute = rng.chance(50);
            let off = rng.below(MINUTE_MS as u64) as i64;
            if on == 0 {
                continue;
            }
            let j = ((u128::from(pick) * u128::from(on)) >> 64) as u64;
            let seed = mix(orng.0 ^ (j + 1).wrapping_mul(GOLDEN));
            let mut it = self.original_item(origin, seed);
            it.status = match (it.status, new_status_roll < 700) {
                (ThreatStatus::Active, true) => ThreatStatus::Cleared,
                (ThreatStatus::Active, false) => ThreatStatus::FalsePositive,
                (ThreatStatus::Cleared, true) => ThreatStatus::Active,
                (ThreatStatus::Cleared, false) => ThreatStatus::FalsePositive,
                (ThreatStatus::FalsePositive, _) => ThreatStatus::Active,
            };
            it.threat_ms = minute * MINUTE_MS + if on_minute { 0 } else { off };
            it.api_ms = it.threat_ms.max(it.msg_ms);
            it.vis_seed = mix(seed ^ mix(minute as u64) ^ 0x5245);
            out.push(it);
        }
    }

    /// When recipient `r`'s event of `it` becomes queryable.
    pub(crate) fn visible_at(&self, it: &Item, r: u8) -> i64 {
        if let Some((per_mille, max_ms)) = self.long_tail {
            let mut tail = Rng::new(mix(it.vis_seed ^ u64::from(r) ^ 0x4c4f_4e47_5441_494c));
            if tail.chance(per_mille) && max_ms > self.max_delay_ms {
                let delay = self.max_delay_ms + 1 + tail.below(max_ms - self.max_delay_ms);
                return it.api_ms + delay as i64;
            }
        }
        if self.max_delay_ms == 0 {
            return it.api_ms;
        }
        let mut rng = Rng::new(mix(it.vis_seed ^ u64::from(r)));
        let delay = if rng.chance(900) {
            rng.below(self.max_delay_ms.min(60_000) + 1)
        } else {
            rng.below(self.max_delay_ms + 1)
        };
        it.api_ms + delay as i64
    }

    /// Renders recipient `r`'s event of `it` as compact JSON into `out` (appending).
    pub(crate) fn render_json(&self, it: &Item, r: u8, out: &mut Vec<u8>) {
        let mut w = Json { out, comma: false };
        w.out.push(b'{');
        self.render(it, r, &mut w);
        w.out.push(b'}');
    }

    /// Renders recipient `r`'s event of `it` as one syslog line (with its newline) into `out`.
    pub(crate) fn render_syslog(&self, it: &Item, r: u8, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<14>1 ");
        push_ts(out, it.api_ms);
        out.extend_from_slice(b" tap-api.proofpoint.com tap-siem - ");
        out.extend_from_slice(it.kind.as_str().as_bytes());
        out.extend_from_slice(b" - eventType=\"");
        out.extend_from_slice(it.kind.as_str().as_bytes());
        out.push(b'"');
        let mut w = Syslog { out };
        self.render(it, r, &mut w);
        w.out.push(b'\n');
    }

    fn render<W: Writer>(&self, it: &Item, r: u8, w: &mut W) {
        if it.kind.is_click() {
            self.render_click(it, w);
        } else {
            self.render_message(it, r, w);
        }
        if let Some(orgs) = &self.orgs {
            // The Essentials additions (proofpoint-feeds.md), after the TAP fields.
            let eid = &orgs[usize::from(it.org)];
            let parent = &orgs[0];
            if usize::from(it.org) >= self.bare_from {
                w.raw(b"customerEid", eid.as_bytes());
            } else {
                w.str(b"customerEid", eid.as_bytes());
            }
            w.parts(b"customerName", &["Client ", eid, " Ltd"]);
            w.str(b"parentEid", parent.as_bytes());
            w.parts(b"parentName", &["Partner ", parent]);
            w.str(b"stackName", b"us1");
            w.parts(
                b"messageDetailsUrl",
                &["https://us1.proofpointessentials.com/app/messages/", eid],
            );
        }
    }

    fn render_message<W: Writer>(&self, it: &Item, r: u8, w: &mut W) {
        let mut g = Rng::new(mix(it.seed ^ 0x4445_5441_494c));
        let blocked = it.kind == EventKind::MessagesBlocked;
        let mut hex = [0u8; 64];
        let sender_name = *g.pick(SENDER_NAMES);
        let sender_domain = *g.pick(SENDER_DOMAINS);
        let n_to = it.recipients;
        let first_rcpt = g.below(RCPT_NAMES.len() as u64) as usize;
        let rcpt = |i: u8| RCPT_NAMES[(first_rcpt + i as usize) % RCPT_NAMES.len()];
        let guid = g.next_u64();
        let guid2 = g.next_u64();

        let mut buf = [0u8; 40];
        w.str(b"GUID", uuid(&mut buf, guid, guid2));
        let mut qid = [0u8; 14];
        alnum(&mut qid, g.next_u64(), g.next_u64());
        w.str(b"QID", &qid);
        if self.orgs.is_none() {
            // Essentials message events may carry no `id` (proofpoint-feeds.md).
            w.str(
                b"id",
                uuid(
                    &mut buf,
                    mix(guid ^ u64::from(r)),
                    mix(guid2 ^ u64::from(r)),
                ),
            );
        }
        {
            let mut tmp = [0u8; 16];
            let a = std::str::from_utf8(hex16(&mut tmp, g.next_u64())).unwrap_or("");
            w.parts(b"messageID", &["<", a, "@", sender_domain, ">"]);
        }
        w.ts(b"messageTime", it.msg_ms);
        w.parts(b"sender", &[sender_name, "@", sender_domain]);
        w.list_start(b"recipient");
        w.item(&[rcpt(r), "@", &self.domain]);
        w.list_end();
        let ip = g.next_u64();
        let mut ipb = [0u8; 16];
        w.str(b"senderIP", ipv4(&mut ipb, ip));
        w.parts(b"fromAddress", &[sender_name, "@", sender_domain]);
        w.parts(
            b"headerFrom",
            &[
                "\"",
                DISPLAY_NAMES[(ip % 7) as usize],
                "\" <",
                sender_name,
                "@",
                sender_domain,
                ">",
            ],
        );
        w.list_start(b"toAddresses");
        for i in 0..n_to {
            w.item(&[rcpt(i), "@", &self.domain]);
        }
        w.list_end();
        w.list_start(b"ccAddresses");
        if g.chance(300) {
            w.item(&[*g.pick(RCPT_NAMES), "@", &self.domain]);
        }
        w.list_end();
        if g.chance(300) {
            w.parts(
                b"replyToAddress",
                &["reply-", sender_name, "@", sender_domain],
            );
        } else {
            w.null(b"replyToAddress");
        }
        let subject = *g.pick(SUBJECTS);
        let mut num = itoa::Buffer::new();
        let n = num.format(g.below(100_000));
        w.parts(b"subject", &[subject, " #", n]);
        let (spam, phish, malware, impostor) =
            (g.below(101), g.below(101), g.below(101), g.below(101));
        w.num(b"spamScore", spam);
        w.num(b"phishScore", phish);
        w.num(b"malwareScore", malware);
        w.num(b"impostorScore", impostor);
        w.str(b"cluster", self.cluster.as_bytes());
        w.str(
            b"completelyRewritten",
            g.pick(&["true", "false", "na"]).as_bytes(),
        );
        w.list_start(b"modulesRun");
        for m in MODULES {
            w.item(&[m]);
        }
        w.list_end();
        w.list_start(b"policyRoutes");
        w.item(&["default_inbound"]);
        if g.chance(400) {
            w.item(&["allow_relay"]);
        }
        w.list_end();
        if blocked {
            let folder = *g.pick(&["Phish", "Malware", "Spam", "Impostor"]);
            w.str(b"quarantineFolder", folder.as_bytes());
            w.parts(b"quarantineRule", &["module.", folder, ".block"]);
        } else {
            w.null(b"quarantineFolder");
            w.null(b"quarantineRule");
        }
        w.num(b"messageSize", 2_000 + g.below(5_000_000));
        w.str(b"xmailer", g.pick(XMAILERS).as_bytes());
        w.list_start(b"messageParts");
        let parts = 1 + g.below(3);
        for p in 0..parts {
            w.obj_start();
            w.str(b"disposition", if p == 0 { b"inline" } else { b"attached" });
            w.str(b"sha256", hex64(&mut hex, g.next_u64(), g.next_u64()));
            w.str(b"md5", &hex64(&mut hex, g.next_u64(), g.next_u64())[..32]);
            let (file, ctype) = *g.pick(PARTS);
            w.str(b"filename", file.as_bytes());
            w.str(b"contentType", ctype.as_bytes());
            w.str(b"oContentType", ctype.as_bytes());
            w.str(b"sandboxStatus", g.pick(SANDBOX).as_bytes());
            w.obj_end();
        }
        w.list_end();
        let url = *g.pick(URLS);
        let (threat, (threat_id_a, threat_id_b)) = self.threat(it.threat_type, g.next_u64());
        let _ = g.next_u64();
        let class = classification(&mut g);
        let campaign = g.chance(500).then(|| {
            let _ = (g.next_u64(), g.next_u64());
            self.campaign_words(threat % CAMPAIGNS)
        });
        let extra = g.chance(10);
        w.list_start(b"threatsInfoMap");
        w.obj_start();
        let threat_key: &[u8] = if self.orgs.is_some() {
            b"threatId"
        } else {
            b"threatID"
        };
        w.str(threat_key, hex64(&mut hex, threat_id_a, threat_id_b));
        w.str(b"threatStatus", it.status.as_str().as_bytes());
        w.str(b"classification", class.as_bytes());
        match it.threat_type {
            ThreatType::Url => w.str(b"threat", url.as_bytes()),
            ThreatType::Attachment => w.str(b"threat", hex64(&mut hex, threat_id_b, threat_id_a)),
            ThreatType::MessageText => w.str(b"threat", b"Impostor: executive impersonation"),
        }
        w.ts(b"threatTime", it.threat_ms);
        w.str(b"threatType", it.threat_type.as_str().as_bytes());
        w.parts(
            b"threatUrl",
            &[
                "https://threatinsight.proofpoint.com/",
                &self.cluster,
                "/threat/email/",
                std::str::from_utf8(hex16(&mut [0u8; 16], threat_id_a)).unwrap_or(""),
            ],
        );
        match campaign {
            Some((a, b)) => w.str(b"campaignID", uuid(&mut buf, a, b)),
            None => w.null(b"campaignID"),
        }
        w.obj_end();
        w.list_end();
        if extra {
            w.str(b"xTapExperimentalField", b"added by a newer API version");
        }
    }

    fn render_click<W: Writer>(&self, it: &Item, w: &mut W) {
        let mut g = Rng::new(mix(it.seed ^ 0x0043_4c49_434b));
        let mut buf = [0u8; 40];
        let mut hex = [0u8; 64];
        let blocked = it.kind == EventKind::ClicksBlocked;
        w.str(b"id", uuid(&mut buf, g.next_u64(), g.next_u64()));
        w.str(b"GUID", uuid(&mut buf, g.next_u64(), g.next_u64()));
        let sender_domain = *g.pick(SENDER_DOMAINS);
        {
            let mut tmp = [0u8; 16];
            let a = hex16(&mut tmp, g.next_u64());
            w.parts(
                b"messageID",
                &[
                    "<",
                    std::str::from_utf8(a).unwrap_or(""),
                    "@",
                    sender_domain,
                    ">",
                ],
            );
        }
        let url = *g.pick(URLS);
        w.str(b"url", url.as_bytes());
        w.str(b"classification", classification(&mut g).as_bytes());
        w.ts(b"clickTime", it.msg_ms);
        let mut ipb = [0u8; 16];
        w.str(b"clickIP", ipv4(&mut ipb, g.next_u64()));
        w.str(b"userAgent", g.pick(USER_AGENTS).as_bytes());
        w.parts(b"recipient", &[*g.pick(RCPT_NAMES), "@", &self.domain]);
        w.parts(b"sender", &[*g.pick(SENDER_NAMES), "@", sender_domain]);
        w.str(b"senderIP", ipv4(&mut ipb, g.next_u64()));
        let (threat, (a, b)) = self.threat(ThreatType::Url, g.next_u64());
        let _ = g.next_u64();
        w.str(b"threatID", hex64(&mut hex, a, b));
        w.ts(b"threatTime", it.threat_ms);
        w.str(b"threatStatus", it.status.as_str().as_bytes());
        let url_key: &[u8] = if g.chance(300) {
            b"threatUrl"
        } else {
            b"threatURL"
        };
        w.parts(
            url_key,
            &[
                "https://threatinsight.proofpoint.com/",
                &self.cluster,
                "/threat/email/",
                std::str::from_utf8(hex16(&mut [0u8; 16], a)).unwrap_or(""),
            ],
        );
        let camp_key: &[u8] = if g.chance(500) {
            b"campaignId"
        } else {
            b"campaignID"
        };
        if g.chance(500) {
            let _ = (g.next_u64(), g.next_u64());
            let (a, b) = self.campaign_words(threat % CAMPAIGNS);
            w.str(camp_key, uuid(&mut buf, a, b));
        } else {
            w.null(camp_key);
        }
        if g.chance(10) {
            w.str(b"xTapExperimentalField", b"added by a newer API version");
        }
        let _ = blocked;
    }
}

fn classification(g: &mut Rng) -> &'static str {
    let roll = g.below(1000);
    if roll < 20 {
        return "TOAD";
    }
    let upper = *g.pick(&["MALWARE", "PHISH", "SPAM", "IMPOSTOR"]);
    if roll < 80 {
        match upper {
            "MALWARE" => "malware",
            "PHISH" => "phish",
            "SPAM" => "spam",
            _ => "impostor",
        }
    } else {
        upper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_statuses_and_counts_follow_the_documented_mix() {
        let g = TenantGen::new(11, "tenant-0002", 6000, 25 * 60_000);
        let mut items = Vec::new();
        let (mut kinds, mut events, mut on_minute, mut fp) = ([0usize; 4], 0usize, 0usize, 0usize);
        let minutes = 24 * 60;
        for m in 29_100_000..29_100_000 + minutes {
            g.minute_items(m, &mut items);
            for it in &items {
                let n = it.recipients as usize;
                kinds[it.kind.index()] += n;
                events += n;
                on_minute += usize::from(it.api_ms % MINUTE_MS == 0) * n;
                fp += usize::from(it.status == ThreatStatus::FalsePositive) * n;
                assert!(it.api_ms >= it.msg_ms && it.api_ms >= it.threat_ms);
                assert_eq!(it.api_ms.div_euclid(MINUTE_MS), m);
            }
        }
        let per_hour = events as f64 / 24.0;
        assert!(
            (5400.0..6600.0).contains(&per_hour),
            "{per_hour} events per hour"
        );
        let share = |i: usize| kinds[i] as f64 / events as f64;
        assert!((0.25..0.35).contains(&share(0)), "blocked {}", share(0));
        assert!((0.35..0.45).contains(&share(1)), "delivered {}", share(1));
        assert!((0.12..0.18).contains(&share(2)) && (0.12..0.18).contains(&share(3)));
        let on = on_minute as f64 / events as f64;
        assert!((0.03..0.08).contains(&on), "on the minute {on}");
        assert!(fp > 0);
    }

    #[test]
    fn timestamps_match_chrono() {
        for ms in [0i64, 1_795_000_000_123, 951_782_400_000, 4_102_444_799_999] {
            let mut out = Vec::new();
            push_ts(&mut out, ms);
            let want = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn every_rendered_event_is_valid_json_with_expected_size() {
        let g = TenantGen::new(7, "tenant-0001", 6000, 25 * 60_000);
        let mut items = Vec::new();
        let mut buf = Vec::new();
        let (mut msg, mut msg_n, mut clk, mut clk_n) = (0usize, 0usize, 0usize, 0usize);
        for m in 29_000_000..29_000_060 {
            g.minute_items(m, &mut items);
            for it in &items {
                for r in 0..it.recipients {
                    buf.clear();
                    g.render_json(it, r, &mut buf);
                    let v: serde_json::Value = serde_json::from_slice(&buf)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)));
                    assert!(v.is_object());
                    if it.kind.is_click() {
                        clk += buf.len();
                        clk_n += 1;
                    } else {
                        msg += buf.len();
                        msg_n += 1;
                    }
                    buf.clear();
                    g.render_syslog(it, r, &mut buf);
                    assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
                }
            }
        }
        let (msg_avg, clk_avg) = (msg / msg_n, clk / clk_n);
        assert!(
            (1500..3500).contains(&msg_avg),
            "message events {msg_avg} B"
        );
        assert!((500..1100).contains(&clk_avg), "click events {clk_avg} B");
    }
}
