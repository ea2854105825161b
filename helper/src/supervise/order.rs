//! The ordering policies as data: who freezes first, whose dumps and restores a rank waits for.
//! Pure functions of (policy, rank, ranks), so each policy is tested without a cluster. The
//! launcher's rank is 0; the names follow the 2017 study (cf/cl: checkpoint launcher first/last,
//! rf/rl: restore launcher first/last).
use crate::site::OrderPolicy;

/// Whether every rank freezes and waits for all others to be frozen before anyone dumps (a
/// consistent cut with no message in flight); otherwise a rank freezes just before its own dump.
pub(super) fn freeze_all_first(policy: OrderPolicy) -> bool {
    policy == OrderPolicy::FreezeAll
}

/// Ranks whose dumps `rank` must see before it may dump.
pub(super) fn dump_after(policy: OrderPolicy, rank: u32, ntasks: u32) -> Vec<u32> {
    match (policy, rank) {
        (OrderPolicy::CfRl | OrderPolicy::CfRf, 0) => vec![],
        (OrderPolicy::CfRl | OrderPolicy::CfRf, _) => vec![0],
        (OrderPolicy::ClRl | OrderPolicy::ClRf, 0) => (1..ntasks).collect(),
        _ => vec![],
    }
}

/// Ranks whose restores `rank` must see before it restores.
pub(super) fn restore_after(policy: OrderPolicy, rank: u32, ntasks: u32) -> Vec<u32> {
    match (policy, rank) {
        (OrderPolicy::CfRf | OrderPolicy::ClRf, 0) => vec![],
        (OrderPolicy::CfRf | OrderPolicy::ClRf, _) => vec![0],
        // freeze-all and *-rl: the launcher's container is restored last (the study's only
        // robust order across nodes).
        (_, 0) => (1..ntasks).collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderPolicy as P;

    #[test]
    fn dump_order_per_policy() {
        for p in [P::FreezeAll, P::CfRl, P::ClRl, P::CfRf, P::ClRf] {
            let waits: Vec<Vec<u32>> = (0..3).map(|r| dump_after(p, r, 3)).collect();
            let want: Vec<Vec<u32>> = match p {
                P::FreezeAll => vec![vec![], vec![], vec![]],
                P::CfRl | P::CfRf => vec![vec![], vec![0], vec![0]],
                P::ClRl | P::ClRf => vec![vec![1, 2], vec![], vec![]],
            };
            assert_eq!(waits, want, "{p}");
        }
        assert!(freeze_all_first(P::FreezeAll));
        assert!(!freeze_all_first(P::CfRl));
    }

    #[test]
    fn restore_order_per_policy() {
        for p in [P::FreezeAll, P::CfRl, P::ClRl, P::CfRf, P::ClRf] {
            let waits: Vec<Vec<u32>> = (0..3).map(|r| restore_after(p, r, 3)).collect();
            let want: Vec<Vec<u32>> = match p {
                P::FreezeAll | P::CfRl | P::ClRl => vec![vec![1, 2], vec![], vec![]],
                P::CfRf | P::ClRf => vec![vec![], vec![0], vec![0]],
            };
            assert_eq!(waits, want, "{p}");
        }
        // A job of one rank waits for nobody.
        assert!(restore_after(P::FreezeAll, 0, 1).is_empty());
    }
}
