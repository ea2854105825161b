//! The values of a job's `--container-env` and `--container-ckpt-interval`: checked by the plugin
//! when the job is submitted and again by the helper (as root) when it is handed them.

/// Largest `--container-ckpt-interval` in minutes (one year): anything above is a typo.
pub const INTERVAL_MAX_MIN: u32 = 525_600;

const ENV_RULES: &str =
    "expected NAME=VALUE entries separated by commas, NAME a shell identifier, \
                         e.g. UCX_TLS=tcp,self,OMPI_MCA_btl_tcp_if_include=eth0";

/// Variables the containers' launcher and the product rely on: not the user's to change.
pub const RESERVED_ENV_PREFIXES: [&str; 2] = ["SLURM_", "OMPI_MCA_plm_rsh_agent"];

/// `NAME=VALUE,...`: names are shell identifiers; values have no control characters. A comma
/// followed by text without '=' continues the previous value, so `UCX_TLS=tcp,self,X=1` is two
/// variables, `UCX_TLS=tcp,self` and `X=1`.
pub fn parse_env(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',') {
        match (part.split_once('='), out.last_mut()) {
            (None, Some(prev)) if !part.is_empty() => {
                prev.push(',');
                prev.push_str(part);
            }
            (None, _) => return Err(format!("'{part}' has no '='; {ENV_RULES}")),
            (Some(_), _) => out.push(part.to_string()),
        }
    }
    check_env(&out)?;
    Ok(out)
}

/// Positive number of minutes.
pub fn parse_interval(s: &str) -> Result<u32, String> {
    let valid = format!("expected a whole number of minutes from 1 to {INTERVAL_MAX_MIN}");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(valid);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=INTERVAL_MAX_MIN).contains(&n) => Ok(n),
        _ => Err(valid),
    }
}

/// The `NAME=VALUE` entries of a job's environment, as [`parse_env`] leaves them and as the helper
/// is handed them one by one (`--env`).
pub fn check_env<S: AsRef<str>>(entries: &[S]) -> Result<(), String> {
    let mut names: Vec<&str> = Vec::new();
    for entry in entries {
        let entry = entry.as_ref();
        let Some((name, value)) = entry.split_once('=') else {
            return Err(format!("'{entry}' has no '='; {ENV_RULES}"));
        };
        let ident = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(format!("'{name}' is not a variable name; {ENV_RULES}"));
        }
        if value.chars().any(char::is_control) {
            return Err(format!(
                "the value of {name} contains control characters; {ENV_RULES}"
            ));
        }
        if let Some(p) = RESERVED_ENV_PREFIXES.iter().find(|p| name.starts_with(*p)) {
            return Err(format!(
                "{name} is reserved (names starting with {p} are set by Slurm and the product)"
            ));
        }
        if names.contains(&name) {
            return Err(format!("{name} is given twice; {ENV_RULES}"));
        }
        names.push(name);
    }
    Ok(())
}
