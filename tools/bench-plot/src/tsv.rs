//! The table scripts/bench section 10 writes: a header line, then one row per job size, fields
//! separated by tabs. Parsing is strict: a bad file names its line and column, so a broken bench
//! run is not silently drawn as a misleading picture.

use std::collections::BTreeSet;

use thiserror::Error;

/// The header, in this order.
pub const COLUMNS: [&str; 8] = [
    "ranks",
    "ranks_per_node",
    "start_s",
    "freeze_p50_s",
    "freeze_p99_s",
    "ckpt_s",
    "held_s",
    "restore_s",
];

/// One job size of the scale section.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ranks: u32,
    pub ranks_per_node: u32,
    pub start_s: f64,
    pub freeze_p50_s: f64,
    pub freeze_p99_s: f64,
    pub ckpt_s: f64,
    pub held_s: f64,
    pub restore_s: f64,
}

#[derive(Debug, Error, PartialEq)]
pub enum TsvError {
    #[error("the table is empty: expected a header line `{}`", COLUMNS.join("\\t"))]
    NoHeader,
    #[error("line 1: header has {found} columns, expected {} (`{}`)", COLUMNS.len(), COLUMNS.join("\\t"))]
    HeaderWidth { found: usize },
    #[error("line 1, column {column}: header is `{found}`, expected `{expected}`")]
    HeaderName {
        column: usize,
        expected: &'static str,
        found: String,
    },
    #[error("line {line}: {found} fields, expected {} (separated by tabs)", COLUMNS.len())]
    FieldCount { line: usize, found: usize },
    #[error("line {line}, column {column} ({name}): `{value}` is not a whole number above 0")]
    Count {
        line: usize,
        column: usize,
        name: &'static str,
        value: String,
    },
    #[error("line {line}, column {column} ({name}): `{value}` is not a number of seconds (finite, >= 0)")]
    Seconds {
        line: usize,
        column: usize,
        name: &'static str,
        value: String,
    },
    #[error("line {line}: {ranks} ranks appear a second time")]
    DuplicateRanks { line: usize, ranks: u32 },
    #[error("the table has a header but no rows")]
    NoRows,
}

/// Parses the whole table; rows come back sorted by ranks. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Row>, TsvError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, header) = lines
        .find(|(_, l)| !l.trim().is_empty())
        .ok_or(TsvError::NoHeader)?;
    check_header(header)?;
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for (line, text) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let row = parse_row(line, text)?;
        if !seen.insert(row.ranks) {
            return Err(TsvError::DuplicateRanks {
                line,
                ranks: row.ranks,
            });
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(TsvError::NoRows);
    }
    rows.sort_by_key(|r| r.ranks);
    Ok(rows)
}

fn check_header(line: &str) -> Result<(), TsvError> {
    let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
    if fields.len() != COLUMNS.len() {
        return Err(TsvError::HeaderWidth {
            found: fields.len(),
        });
    }
    for (i, (found, expected)) in fields.iter().zip(COLUMNS).enumerate() {
        if *found != expected {
            return Err(TsvError::HeaderName {
                column: i + 1,
                expected,
                found: (*found).to_owned(),
            });
        }
    }
    Ok(())
}

fn parse_row(line: usize, text: &str) -> Result<Row, TsvError> {
    let f: Vec<&str> = text.split('\t').map(str::trim).collect();
    if f.len() != COLUMNS.len() {
        return Err(TsvError::FieldCount {
            line,
            found: f.len(),
        });
    }
    let count = |i: usize| -> Result<u32, TsvError> {
        match f[i].parse::<u32>() {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(TsvError::Count {
                line,
                column: i + 1,
                name: COLUMNS[i],
                value: f[i].to_owned(),
            }),
        }
    };
    let secs = |i: usize| -> Result<f64, TsvError> {
        match f[i].parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(TsvError::Seconds {
                line,
                column: i + 1,
                name: COLUMNS[i],
                value: f[i].to_owned(),
            }),
        }
    };
    Ok(Row {
        ranks: count(0)?,
        ranks_per_node: count(1)?,
        start_s: secs(2)?,
        freeze_p50_s: secs(3)?,
        freeze_p99_s: secs(4)?,
        ckpt_s: secs(5)?,
        held_s: secs(6)?,
        restore_s: secs(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "ranks\tranks_per_node\tstart_s\tfreeze_p50_s\tfreeze_p99_s\tckpt_s\theld_s\trestore_s\n";

    #[test]
    fn parses_and_sorts_rows() {
        let text =
            format!("{HEADER}16\t4\t3.5\t0.1\t0.2\t4\t2.5\t6\n\n4\t1\t2\t0.05\t0.08\t1.5\t1\t3\n");
        let rows = parse(&text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ranks, 4);
        assert_eq!(rows[0].ranks_per_node, 1);
        assert_eq!(rows[0].freeze_p99_s, 0.08);
        assert_eq!(rows[1].ranks, 16);
        assert_eq!(rows[1].restore_s, 6.0);
    }

    #[test]
    fn accepts_crlf_and_padded_fields() {
        let text = format!(
            "{}4\t 1\t2\t0\t0\t1\t1\t3\r\n",
            HEADER.replace('\n', "\r\n")
        );
        assert_eq!(parse(&text).unwrap()[0].ranks_per_node, 1);
    }

    #[test]
    fn names_the_bad_header_column() {
        let text = HEADER.replace("ckpt_s", "checkpoint_s");
        assert_eq!(
            parse(&text),
            Err(TsvError::HeaderName {
                column: 6,
                expected: "ckpt_s",
                found: "checkpoint_s".into()
            })
        );
        assert_eq!(
            parse("ranks ranks_per_node\n"),
            Err(TsvError::HeaderWidth { found: 1 })
        );
    }

    #[test]
    fn names_line_and_column_of_a_bad_field() {
        let text =
            format!("{HEADER}4\t1\t2\t0.05\t0.08\t1.5\t1\t3\n16\t4\t3.5\tNaN\t0.2\t4\t2.5\t6\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(
            err,
            TsvError::Seconds {
                line: 3,
                column: 4,
                name: "freeze_p50_s",
                value: "NaN".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "line 3, column 4 (freeze_p50_s): `NaN` is not a number of seconds (finite, >= 0)"
        );
        let text = format!("{HEADER}0\t1\t2\t0\t0\t1\t1\t3\n");
        assert!(matches!(
            parse(&text),
            Err(TsvError::Count {
                line: 2,
                column: 1,
                ..
            })
        ));
        let text = format!("{HEADER}4\t1\t-2\t0\t0\t1\t1\t3\n");
        assert!(matches!(
            parse(&text),
            Err(TsvError::Seconds {
                line: 2,
                column: 3,
                ..
            })
        ));
    }

    #[test]
    fn rejects_short_rows_duplicates_and_empty_tables() {
        let text = format!("{HEADER}4 1 2 0 0 1 1 3\n");
        assert_eq!(
            parse(&text),
            Err(TsvError::FieldCount { line: 2, found: 1 })
        );
        let text = format!("{HEADER}4\t1\t2\t0\t0\t1\t1\t3\n4\t1\t2\t0\t0\t1\t1\t3\n");
        assert_eq!(
            parse(&text),
            Err(TsvError::DuplicateRanks { line: 3, ranks: 4 })
        );
        assert_eq!(parse(HEADER), Err(TsvError::NoRows));
        assert_eq!(parse("\n \n"), Err(TsvError::NoHeader));
    }
}
