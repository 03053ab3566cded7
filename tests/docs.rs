//! The documentation, held to the code: every TOML block of the README and `docs/` is a config
//! that `tapfwd check` accepts or a fragment marked as such that still parses; every relative
//! link (and its anchor) in the repository's Markdown resolves; and the key tables agree with the
//! config types, in both directions. docs/testing.md ("The docs tests") says how a fragment and a
//! key table are marked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A key no config table has; the types refuse it and list the keys they do have.
const UNKNOWN_KEY: &str = "zzz_not_a_key";

// ------------------------------------------------------------------------------- reading

/// The Markdown files whose links are checked, relative to the repository root: the README, the
/// changelog, and every `.md` under `docs/`, `deploy/` and `scripts/`.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| dir.join(e.unwrap().file_name()))
            .collect();
        entries.sort();
        for path in entries {
            if Path::new(ROOT).join(&path).is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    for dir in ["docs", "deploy", "scripts"] {
        walk(Path::new(dir), &mut files);
    }
    files
}

/// The pages whose TOML blocks are tested: the README and `docs/`.
fn config_pages() -> Vec<PathBuf> {
    markdown_files()
        .into_iter()
        .filter(|p| p == Path::new("README.md") || p.starts_with("docs"))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fenced code block.
struct Block {
    /// The fence's info string (`toml`, `toml fragment`, `sh`, empty).
    info: String,
    /// Its lines, without the indentation of its fence.
    body: String,
    /// Line number of the opening fence.
    line: usize,
    /// The last heading above it.
    heading: String,
}

/// One Markdown page, cut into what the checks need.
struct Page {
    blocks: Vec<Block>,
    /// Every line outside code blocks, with its line number.
    prose: Vec<(usize, String)>,
    /// Headings outside code blocks, in order.
    headings: Vec<String>,
}

fn parse(text: &str) -> Page {
    let mut page = Page {
        blocks: Vec::new(),
        prose: Vec::new(),
        headings: Vec::new(),
    };
    let mut heading = String::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let mut body = Vec::new();
            for (_, l) in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                let spaces = l.len() - l.trim_start_matches(' ').len();
                body.push(&l[spaces.min(indent)..]);
            }
            page.blocks.push(Block {
                info: info.trim().to_string(),
                body: body.join("\n"),
                line: i + 1,
                heading: heading.clone(),
            });
            continue;
        }
        let hashes = line.len() - line.trim_start_matches('#').len();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            heading = line[hashes..].trim().to_string();
            page.headings.push(heading.clone());
        }
        page.prose.push((i + 1, line.to_string()));
    }
    page
}

// ------------------------------------------------------------------------------- tapfwd check

/// Runs `tapfwd check --config` on `text` in a scratch directory (relative paths land there), with
/// every variable that a `…_env = "NAME"` key names set, and no `TAPFWD__` override from outside.
fn check(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tapfwd"));
    command
        .args(["check", "--config"])
        .arg(&path)
        .current_dir(dir.path());
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("TAPFWD")) {
        command.env_remove(name);
    }
    // Inline tables included (`auth = { …, token_env = "NAME" }`).
    for (at, _) in text.match_indices("_env = \"") {
        let name = &text[at + 8..];
        command.env(&name[..name.find('"').unwrap()], "docs-test-value");
    }
    command.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ------------------------------------------------------------------------------- TOML blocks

/// Every ```toml block of the README and docs/ is a complete config that `tapfwd check` accepts;
/// a block that is only part of one is fenced ```toml fragment and must still parse as TOML.
/// "Landing in a SIEM" has a complete config for each SIEM (this replaces the README test of
/// that section).
#[test]
fn every_toml_block_is_a_config_check_accepts_or_a_fragment_that_parses() {
    let mut failures = Vec::new();
    let mut complete = 0;
    let mut fragments = 0;
    let mut siem_headings = BTreeSet::new();
    for path in config_pages() {
        for block in parse(&read(&path)).blocks {
            let at = format!(
                "{}:{} (under \"{}\")",
                path.display(),
                block.line,
                block.heading
            );
            match block.info.as_str() {
                "toml" => {
                    complete += 1;
                    if path == Path::new("docs/siems.md") {
                        siem_headings.insert(block.heading.clone());
                    }
                    let out = check(&block.body);
                    let ok = out.status.success()
                        && String::from_utf8_lossy(&out.stdout).contains("config ok");
                    if !ok {
                        failures.push(format!(
                            "{at}: `tapfwd check` refuses this config (mark it ```toml fragment if \
                             it is only part of one):\n{}\n{}",
                            block.body,
                            stderr(&out)
                        ));
                    }
                }
                "toml fragment" => {
                    fragments += 1;
                    let parsed = config::Config::builder()
                        .add_source(config::File::from_str(
                            &block.body,
                            config::FileFormat::Toml,
                        ))
                        .build();
                    if let Err(e) = parsed {
                        failures.push(format!("{at}: the fragment is not TOML: {e}"));
                    }
                }
                info if info.starts_with("toml") => failures.push(format!(
                    "{at}: ```{info}: a TOML block is ```toml (a complete config) or \
                     ```toml fragment"
                )),
                _ => {}
            }
        }
    }
    for siem in [
        "Splunk",
        "Sentinel",
        "LogScale",
        "Elastic (via Kafka or HTTP)",
    ] {
        if !siem_headings.contains(siem) {
            failures.push(format!(
                "docs/siems.md has no complete config under \"{siem}\": {siem_headings:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        complete >= 5 && fragments >= 5,
        "{complete} complete configs and {fragments} fragments: the pages were not read"
    );
}

// ------------------------------------------------------------------------------- links

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_` kept, spaces to `-`,
/// everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets `-1`, `-2`, … as on GitHub.
fn anchors(page: &Page) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for heading in &page.headings {
        let base = slug(heading);
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// `text` without its code spans (a run of backticks up to the next run of the same length).
fn without_code_spans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            let next = text[i..].find('`').map_or(text.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let mut j = i + run;
        let mut close = None;
        while let Some(n) = text[j..].find('`') {
            let start = j + n;
            let len = bytes[start..].iter().take_while(|b| **b == b'`').count();
            if len == run {
                close = Some(start + len);
                break;
            }
            j = start + len;
        }
        match close {
            Some(end) => i = end,
            None => {
                out.push_str(&text[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The targets of the inline links in `text`, `[label](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// Every relative link in the repository's Markdown names a file that exists, and its anchor (if
/// it has one and points into Markdown) a heading of that file.
#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in markdown_files() {
        let page = parse(&read(&path));
        let prose: Vec<&str> = page.prose.iter().map(|(_, l)| l.as_str()).collect();
        let text = without_code_spans(&prose.join("\n"));
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if file.is_empty() {
                path.clone()
            } else {
                path.parent().unwrap().join(file)
            };
            let on_disk = Path::new(ROOT).join(&resolved);
            if !on_disk.exists() {
                failures.push(format!(
                    "{}: link to `{target}`: {} does not exist",
                    path.display(),
                    resolved.display()
                ));
                continue;
            }
            if !anchor.is_empty() && on_disk.extension().is_some_and(|e| e == "md") {
                let found = anchors(&parse(&std::fs::read_to_string(&on_disk).unwrap()));
                if !found.contains(anchor) {
                    failures.push(format!(
                        "{}: link to `{target}`: {} has no heading with the anchor `{anchor}`",
                        path.display(),
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 50,
        "only {checked} links found: the pages were not read"
    );
}

#[test]
fn anchors_follow_githubs_rule() {
    assert_eq!(
        slug("HTTP sinks: generic HTTP, Splunk, LogScale, Sentinel"),
        "http-sinks-generic-http-splunk-logscale-sentinel"
    );
    assert_eq!(
        slug("Proofpoint Essentials partners (`product = \"essentials\"`)"),
        "proofpoint-essentials-partners-product--essentials"
    );
    assert_eq!(
        slug("Many tenants: tenants_dir and sharding"),
        "many-tenants-tenants_dir-and-sharding"
    );
    assert_eq!(
        without_code_spans("a `[x](y)` b ``c ` d`` [e](f)"),
        "a  b  [e](f)"
    );
    assert_eq!(link_targets("[a](b.md#c) and [d](e)"), ["b.md#c", "e"]);
}

// ------------------------------------------------------------------------------- key tables

/// A key table: the TOML that opens the config table it lists (from its `<!-- config-keys … -->`
/// comment) and the keys in its first column.
struct KeyTable {
    at: String,
    probe: String,
    keys: BTreeSet<String>,
}

impl KeyTable {
    /// The header of the config table the keys belong to (`[sinks.x.retry]`; empty for the top
    /// level) and the keys the probe sets there itself (the tag, `type = "kafka"`).
    fn table_and_tags(&self) -> (String, BTreeMap<String, String>) {
        let mut header = String::new();
        let mut tags = BTreeMap::new();
        for line in self.probe.lines().map(str::trim) {
            if line.starts_with('[') {
                header = line.to_string();
                tags.clear();
            } else if let Some((k, v)) = line.split_once('=') {
                tags.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        (header, tags)
    }

    /// What the table is about, for messages and the list of tables that must exist.
    fn name(&self) -> String {
        let (header, tags) = self.table_and_tags();
        let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{header} {}", tags.join(", ")).trim().to_string()
    }
}

/// The names in backticks in `cell`.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn key_tables() -> Vec<KeyTable> {
    let mut tables = Vec::new();
    for path in config_pages() {
        let page = parse(&read(&path));
        let mut prose = page.prose.iter().peekable();
        while let Some((line_no, line)) = prose.next() {
            if !line.trim_start().starts_with("<!-- config-keys") {
                continue;
            }
            let at = format!("{}:{line_no}", path.display());
            let mut probe = Vec::new();
            for (_, l) in prose.by_ref() {
                if l.trim() == "-->" {
                    break;
                }
                probe.push(l.as_str());
            }
            while prose.peek().is_some_and(|(_, l)| l.trim().is_empty()) {
                prose.next();
            }
            let mut rows = Vec::new();
            while let Some((_, l)) = prose.next_if(|(_, l)| l.starts_with('|')) {
                rows.push(l);
            }
            assert!(
                rows.len() > 2,
                "{at}: a config-keys comment must be followed by its table"
            );
            let keys = rows[2..]
                .iter()
                .flat_map(|row| backticked(row.split('|').nth(1).unwrap_or("")))
                .collect();
            tables.push(KeyTable {
                at,
                probe: probe.join("\n"),
                keys,
            });
        }
    }
    tables
}

/// The keys a config table takes, as the types say when they refuse an unknown key
/// (``unknown field `zzz_not_a_key`, expected one of `a`, `b` ``): one `tapfwd check` per table.
fn keys_of(table: &KeyTable) -> Result<BTreeSet<String>, String> {
    let out = check(&format!("{}\n{UNKNOWN_KEY} = 1\n", table.probe));
    let err = stderr(&out);
    let refusal = format!("unknown field `{UNKNOWN_KEY}`");
    let Some(at) = err.find(&refusal) else {
        return Err(format!(
            "{}: `{UNKNOWN_KEY}` in {} was not refused as an unknown key:\n{err}",
            table.at,
            table.name()
        ));
    };
    let listed = &err[at + refusal.len()..];
    let listed = &listed[..listed.find(" for key").unwrap_or(listed.len())];
    let listed = listed.lines().next().unwrap_or("");
    Ok(backticked(listed).into_iter().collect())
}

/// Whether `key` is a key of the probed table although its refusal did not list it: set to a
/// value no key takes (`{ zzz_probe = 1 }`), a key of the table fails on its value, a key it
/// does not have is refused by name (or, for another product's key, reported as such).
fn accepts(table: &KeyTable, key: &str) -> bool {
    let err = stderr(&check(&format!(
        "{}\n{key} = {{ zzz_probe = 1 }}\n",
        table.probe
    )));
    !err.contains(&format!("unknown field `{key}`"))
        && ["invalid type", "invalid value", "zzz_probe", "expected"]
            .iter()
            .any(|about_the_value| err.contains(about_the_value))
}

/// Every key in a key table of the docs exists in the config types, and every key the types
/// take is in the docs: each table's keys are compared with the ones the types list when they
/// refuse an unknown key.
#[test]
fn the_key_tables_list_exactly_the_keys_of_the_config_types() {
    let tables = key_tables();
    let mut failures = Vec::new();
    let mut listed_by = Vec::new();
    for table in &tables {
        match keys_of(table) {
            Ok(keys) => listed_by.push(keys),
            Err(e) => {
                failures.push(e);
                listed_by.push(BTreeSet::new());
            }
        }
    }
    // The fallback below tells a key from a non-key (every table of the docs lists its keys in
    // its refusal today, so nothing else runs it).
    let poll = tables
        .iter()
        .find(|t| t.name() == "[poll]")
        .expect("a [poll] key table");
    assert!(accepts(poll, "interval") && !accepts(poll, UNKNOWN_KEY));
    // Documented keys the types do not have.
    for (table, listed) in tables.iter().zip(&listed_by) {
        let (_, tags) = table.table_and_tags();
        for key in &table.keys {
            if tags.contains_key(key) || listed.contains(key) || accepts(table, key) {
                continue;
            }
            failures.push(format!(
                "{}: `{key}` is documented for {} but the config types do not take it",
                table.at,
                table.name()
            ));
        }
    }
    // Keys of the types the docs do not list. Tables of one config table (`[tenants.x]` per
    // product, `[sinks.x]` per type) are checked each on its own when the types tell them apart,
    // and together when the types give them all the same keys (one struct for every product).
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, table) in tables.iter().enumerate() {
        groups.entry(table.table_and_tags().0).or_default().push(i);
    }
    for members in groups.values() {
        let same = members
            .iter()
            .all(|&i| listed_by[i] == listed_by[members[0]]);
        for &i in members {
            let documented: BTreeSet<&String> = if same {
                members.iter().flat_map(|&j| &tables[j].keys).collect()
            } else {
                tables[i].keys.iter().collect()
            };
            for key in &listed_by[i] {
                if !documented.contains(key) {
                    failures.push(format!(
                        "{}: the config types take `{key}` in {}, but no key table lists it",
                        tables[i].at,
                        tables[i].name()
                    ));
                }
            }
        }
    }
    let names: BTreeSet<String> = tables.iter().map(KeyTable::name).collect();
    let mut required = vec![
        String::new(),
        "[poll]".into(),
        "[log]".into(),
        "[enrichment]".into(),
        "[tenants.x.people]".into(),
        "[sinks.x.retry]".into(),
        "[sinks.x.auth] strategy = \"basic\"".into(),
        "[sinks.x.auth] strategy = \"bearer\"".into(),
    ];
    for product in [
        "tap",
        "essentials",
        "pod",
        "trap",
        "isolation",
        "ctr",
        "itm",
    ] {
        required.push(format!("[tenants.x] product = \"{product}\""));
    }
    for kind in [
        "file",
        "syslog",
        "kafka",
        "http",
        "splunk_hec",
        "logscale",
        "sentinel",
    ] {
        required.push(format!("[sinks.x] type = \"{kind}\""));
    }
    for name in required {
        if !names.contains(&name) {
            failures.push(format!(
                "no key table for `{name}` (top level if empty); tables: {names:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ------------------------------------------------------------------------------- README commands

/// Every command of the README's ```sh blocks exists as written: `cargo run [--release |
/// --profile P] -- SUBCOMMAND …` names a `tapfwd` subcommand (its `--help` succeeds), a profile the
/// manifest declares, and `scripts/NAME [SUBCOMMAND]` an executable script that takes that
/// subcommand (`scripts/test-services down`, which stops what `scripts/test` leaves running).
#[test]
fn the_readme_commands_exist() {
    let page = parse(&read(Path::new("README.md")));
    let manifest = read(Path::new("Cargo.toml"));
    let mut failures = Vec::new();
    let mut checked = 0;
    for block in page.blocks.iter().filter(|b| b.info == "sh") {
        for line in block.body.lines() {
            let command = line.split('#').next().unwrap_or("").trim();
            let words: Vec<&str> = command.split_whitespace().collect();
            let at = format!("README.md:{}: `{command}`", block.line);
            match words.as_slice() {
                ["cargo", "run", rest @ ..] => {
                    checked += 1;
                    if let Some(i) = rest.iter().position(|w| *w == "--profile") {
                        let profile = rest.get(i + 1).copied().unwrap_or("");
                        if !manifest.contains(&format!("[profile.{profile}]")) {
                            failures.push(format!("{at}: Cargo.toml has no profile `{profile}`"));
                        }
                    }
                    let Some(sub) = rest
                        .iter()
                        .position(|w| *w == "--")
                        .and_then(|i| rest.get(i + 1))
                    else {
                        failures.push(format!("{at}: no `-- SUBCOMMAND`"));
                        continue;
                    };
                    let out = Command::new(env!("CARGO_BIN_EXE_tapfwd"))
                        .args([sub, "--help"])
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        failures.push(format!("{at}: `tapfwd {sub}` is no subcommand"));
                    }
                }
                [script, rest @ ..] if script.starts_with("scripts/") => {
                    checked += 1;
                    let path = Path::new(ROOT).join(script);
                    let executable = std::fs::metadata(&path).is_ok_and(|m| {
                        use std::os::unix::fs::PermissionsExt as _;
                        m.permissions().mode() & 0o111 != 0
                    });
                    if !executable {
                        failures.push(format!("{at}: {script} is not an executable script"));
                        continue;
                    }
                    if let Some(sub) = rest.first().filter(|w| !w.starts_with('-')) {
                        let text = read(Path::new(script));
                        if !text.contains(&format!("{sub})")) && !text.contains(&format!("|{sub}"))
                        {
                            failures.push(format!("{at}: {script} takes no `{sub}`"));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 5,
        "only {checked} commands found: the README was not read"
    );
}
