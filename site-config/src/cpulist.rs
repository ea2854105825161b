//! Linux CPU lists ("0-3,8,10-11"): the syntax of cpuset.cpus, /sys/devices/system/cpu/online,
//! `Cpus_allowed_list` and Slurm's allocated-core lists. Shared by the plugin, which computes a
//! task's CPUs, and the helper, which must not trust what it is given.
use std::fmt;

/// CPU ids accepted: below this (bounds what a range like `0-4000000000` may expand to).
pub const CPU_ID_LIMIT: u32 = 65_536;

/// A string that is not a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{list}' is not a CPU list: {reason} (expected ids and ranges below {CPU_ID_LIMIT}, e.g. 0-3,8)")]
pub struct CpuListError {
    pub list: String,
    pub reason: String,
}

/// A non-empty set of CPU ids, sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<u32>);

impl CpuList {
    /// Parses `a`, `a-b` items separated by commas; surrounding whitespace (a sysfs file's
    /// newline) is ignored, anything else is an error.
    pub fn parse(s: &str) -> Result<CpuList, CpuListError> {
        let bad = |reason: String| CpuListError {
            list: s.to_string(),
            reason,
        };
        let mut ids = Vec::new();
        for item in s.trim().split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (cpu_id(a), cpu_id(b)),
                None => (cpu_id(item), cpu_id(item)),
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => ids.extend(lo..=hi),
                (Some(_), Some(_)) => return Err(bad(format!("range '{item}' runs backwards"))),
                _ => return Err(bad(format!("'{item}' is not an id or a range"))),
            }
        }
        CpuList::from_ids(ids).ok_or_else(|| bad("empty".into()))
    }

    /// The set of `ids` (None if empty).
    pub fn from_ids(ids: impl IntoIterator<Item = u32>) -> Option<CpuList> {
        let mut v: Vec<u32> = ids.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        (!v.is_empty()).then_some(CpuList(v))
    }

    pub fn ids(&self) -> &[u32] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (a CpuList is never empty); for clippy's len/is_empty convention.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every id of `self` is in `other`.
    pub fn is_subset_of(&self, other: &CpuList) -> bool {
        self.0.iter().all(|c| other.0.binary_search(c).is_ok())
    }
}

/// Digits only (no sign, no blanks), below CPU_ID_LIMIT.
fn cpu_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|n| *n < CPU_ID_LIMIT)
}

impl std::str::FromStr for CpuList {
    type Err = CpuListError;
    fn from_str(s: &str) -> Result<Self, CpuListError> {
        CpuList::parse(s)
    }
}

/// The shortest list form: runs of consecutive ids as ranges.
impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &str) -> Vec<u32> {
        CpuList::parse(s).unwrap().ids().to_vec()
    }

    #[test]
    fn parses_ids_and_ranges() {
        assert_eq!(ids("0"), vec![0]);
        assert_eq!(ids("0-3"), vec![0, 1, 2, 3]);
        assert_eq!(ids("0-1,4,6-7\n"), vec![0, 1, 4, 6, 7]);
        assert_eq!(ids("3,1,2-2,1"), vec![1, 2, 3], "sorted, duplicates merged");
        assert_eq!(ids(" 5 "), vec![5]);
    }

    #[test]
    fn rejects_what_is_not_a_list() {
        for bad in [
            "",
            "\n",
            ",",
            "0,",
            ",1",
            "a",
            "1-",
            "-1",
            "3-1",
            "1--2",
            "0-3:2",
            "+1",
            "1 ,2",
            "65536",
            "0-65536",
            "99999999999",
        ] {
            let err = CpuList::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("is not a CPU list"),
                "{bad}: {err}"
            );
        }
        assert!(CpuList::parse("3-1")
            .unwrap_err()
            .reason
            .contains("backwards"));
    }

    #[test]
    fn renders_shortest_form_and_round_trips() {
        for (input, want) in [
            ("0", "0"),
            ("0-3", "0-3"),
            ("0,1,2,5,7,8", "0-2,5,7-8"),
            ("9,1", "1,9"),
            ("65535", "65535"),
        ] {
            let l = CpuList::parse(input).unwrap();
            assert_eq!(l.to_string(), want);
            assert_eq!(CpuList::parse(&l.to_string()).unwrap(), l);
        }
    }

    #[test]
    fn sets() {
        let a = CpuList::parse("1-2").unwrap();
        let b = CpuList::parse("0-3").unwrap();
        assert!(a.is_subset_of(&b) && !b.is_subset_of(&a));
        assert_eq!(CpuList::from_ids([]), None);
        assert_eq!(CpuList::from_ids([2, 2, 0]).unwrap().ids(), &[0, 2]);
        assert_eq!(a.len(), 2);
        assert!(!a.is_empty());
    }
}
