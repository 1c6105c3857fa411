//! Rules the kernel runs beside fwscript's that its reads do not show
//! (survey → **warning**): iptables-legacy's on an nf_tables host
//! ([`legacy_rules`]), another program's nf_tables chains on the same
//! hooks ([`nft_tables`]). `plan`, `apply` and `status` warn; the daemon
//! logs each once while it stands.

use crate::backend::Backend;
use crate::legacy_rules::{self, LegacyRules};
use crate::netfilter::Family;
use crate::nft_tables::{self, NftTable};

#[derive(Debug, Default)]
pub struct Hidden {
    pub legacy: Vec<LegacyRules>,
    pub nft: Vec<NftTable>,
}

impl Hidden {
    /// Each finding as `plan` says it.
    pub fn messages(&self) -> impl Iterator<Item = String> + '_ {
        let legacy = self.legacy.iter().map(ToString::to_string);
        legacy.chain(self.nft.iter().map(ToString::to_string))
    }
}

/// Looks: a read of `/proc` on a host without legacy tables, and a netlink
/// question for the nf_tables table names; only where another program has
/// a table, one `nft -j list chains` and one listing per such table.
pub fn look(backend: &dyn Backend) -> Hidden {
    let legacy = Family::ALL
        .iter()
        .filter_map(|&family| legacy_rules::found(family, &backend.legacy_save(family)?))
        .collect();
    let mut nft = backend
        .nft_chains()
        .and_then(|(json, iptables_uses_nft)| nft_tables::found(&json, iptables_uses_nft))
        .unwrap_or_default();
    for table in nft.iter_mut().filter(|t| t.listable()) {
        if let Some(json) = backend.nft_table(&table.family, &table.table) {
            table.count_rules(&json);
        }
    }
    nft.retain(NftTable::decides);
    Hidden { legacy, nft }
}

/// `a`, `a and b`, `a, b and c`; `none` for nothing.
pub(crate) fn in_words(items: &[String]) -> String {
    match items.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "none".into(),
    }
}
