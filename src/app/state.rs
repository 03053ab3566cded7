//! The state store as the app opens it: a store sled cannot read, or one that is not the store
//! the sinks were fed from, is [`Refused`] with the `tapfwd recover` commands that are the way out
//! (invariants 1 and 2: nothing is re-delivered or skipped silently), and what `tapfwd check`
//! says about it.

use std::fmt;
use std::path::Path;

use crate::config::Config;
use crate::sinks;
use crate::store::{Lineage, Store, StoreError};

/// A refusal to start that a restart cannot cure: the state needs the operator (`tapfwd recover`).
/// `tapfwd` exits with [`crate::cli::EXIT_REFUSED`] on it, which the systemd unit does not restart
/// (`RestartPreventExitStatus=`).
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The sinks the config's tenants deliver to.
fn sinks_in_use(config: &Config) -> std::collections::BTreeSet<String> {
    config
        .tenants
        .values()
        .flat_map(|t| t.all_sinks())
        .collect()
}

/// The `tapfwd recover` command that rebuilds sink `s`'s state.
fn recover_command(config: &Config, s: &str) -> String {
    match config.sinks.get(s) {
        Some(sinks::SinkConfig::File(_)) => format!("`tapfwd recover --config FILE --sink {s}`"),
        _ => format!("`tapfwd recover --config FILE --sink {s} --start-at TIME`"),
    }
}

/// Opens the config's state store; one that sled cannot read is [`Refused`], naming the way out.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    match Store::open(&config.state_dir) {
        Ok(store) => Ok(store),
        Err(StoreError::Damaged { path, message }) => {
            let how: Vec<String> = sinks_in_use(config)
                .iter()
                .map(|s| recover_command(config, s))
                .collect();
            Err(Refused(format!(
                "the state store at {} is damaged: {message}. A restart cannot cure that, so the daemon refuses to \
                 start. Rebuild the state of each sink: {}; the first `recover` moves the damaged store aside (to {}.damaged-TIME) \
                 and starts a new one. A file sink is rebuilt from its own file and goes on exactly once; for another \
                 sink, --start-at picks the time to go on from",
                path.display(),
                how.join(", "),
                path.display(),
            ))
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses a store that is not the one the sinks were fed from ([`Lineage::Lost`]) while some
/// sink in use has no stream in it (`tapfwd recover` gives each one).
pub fn refuse_lost_store(config: &Config, store: &Store) -> anyhow::Result<()> {
    let Lineage::Lost { expected } = store.lineage()? else {
        return Ok(());
    };
    let fed = store.stream_sinks()?;
    let missing: Vec<String> = sinks_in_use(config)
        .into_iter()
        .filter(|s| !fed.contains(s))
        .collect();
    if missing.is_empty() {
        tracing::warn!(store = %store.dir().display(), "the state store was rebuilt by `tapfwd recover`; going on from the recovered positions");
        return Ok(());
    }
    Err(lost_store_refusal(config, store.dir(), &expected, &missing).into())
}

/// [`refuse_lost_store`]'s refusal, for the state directory `dir` whose identity (in
/// `store.id`, or the marker outside it) names store `expected`.
pub fn lost_store_refusal(
    config: &Config,
    dir: &Path,
    expected: &str,
    missing: &[String],
) -> Refused {
    let id_file = dir.join(crate::store::ID_FILE);
    let named_by = match crate::store::marker_path(dir) {
        Some(marker) if !id_file.exists() => format!(
            "{} names store {expected}, but the state directory {} holds no store of that identity \
             (it was deleted, or state_dir points elsewhere; if you mean to start afresh, delete {} first)",
            marker.display(),
            dir.display(),
            marker.display()
        ),
        _ => format!(
            "{} names store {expected}, but the store there is new (it was deleted, cut short or damaged)",
            id_file.display()
        ),
    };
    Refused(format!(
        "the state store in {dir} is not the one the sinks were fed from: {named_by}. Starting would fetch every \
         tenant's last hours again and deliver them twice, so the daemon refuses. Rebuild the state of each sink not \
         yet recovered ({list}): {how}. A file sink is rebuilt from its own file and goes on exactly once; for another \
         sink, --start-at picks the time to go on from, and events between then and the lost position are delivered again",
        dir = dir.display(),
        list = missing.join(", "),
        how = missing
            .iter()
            .map(|s| recover_command(config, s))
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// What `tapfwd check` says about the config's state store: whether `run` would take it. A state
/// directory that does not exist is not created; one owned by another user is not opened (sled
/// writes files as it opens). The daemon holding the store is fine.
pub fn inspect_state(config: &Config) -> anyhow::Result<String> {
    let dir = &config.state_dir;
    if !dir.exists() {
        if let Some(expected) = crate::store::marked_identity(dir) {
            let all: Vec<String> = sinks_in_use(config).into_iter().collect();
            return Err(lost_store_refusal(config, dir, &expected, &all).into());
        }
        return Ok(format!(
            "state store: none yet in {} (the first start makes it)",
            dir.display()
        ));
    }
    {
        use std::os::unix::fs::MetadataExt as _;
        let owner = std::fs::metadata(dir).map(|m| m.uid());
        let me = std::fs::metadata("/proc/self").map(|m| m.uid());
        if let (Ok(owner), Ok(me)) = (owner, me) {
            if owner != me {
                return Ok(format!(
                    "state store: not looked at ({} belongs to uid {owner}; run `tapfwd check` as that user)",
                    dir.display()
                ));
            }
        }
    }
    let store = match open_store(config) {
        Ok(store) => store,
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(StoreError::Locked { .. }) => {
                return Ok(format!(
                    "state store: in use by the running daemon ({})",
                    dir.display()
                ))
            }
            _ => return Err(e),
        },
    };
    refuse_lost_store(config, &store)?;
    Ok(format!(
        "state store ok: {} stream(s) in {}",
        store.streams()?.len(),
        dir.display()
    ))
}
