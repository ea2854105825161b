//! Finding the plugin's arguments in plugstack.conf the way Slurm reads the file (spank.c):
//! `required|optional PATH ARGS...` lines, `#` comments, and `include PATTERN` lines whose glob(3)
//! pattern is relative to the including file's directory unless absolute; a pattern that matches
//! nothing is not an error, matches are read in sorted order, and includes nest.
use crate::{ConfigError, PLUGIN_FILE};
use std::path::{Path, PathBuf};

/// Includes nested deeper than this are refused (an include loop would never end).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// What plugstack.conf says about the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlugstackArgs {
    /// The arguments of the first line that loads the plugin (None: no line does).
    pub args: Option<Vec<String>>,
    /// Every file read, in order (the runtime wrapper reports them).
    pub files: Vec<PathBuf>,
}

/// How a file is read: plainly (admin CLI), or through a trust check (runtime wrapper).
pub type Reader<'a> = dyn FnMut(&Path) -> Result<String, ConfigError> + 'a;

/// `std::fs::read_to_string` with the error as a `ConfigError`.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The plugin's arguments in `path` and the files it includes.
pub fn plugin_args(path: &Path, read: &mut Reader) -> Result<PlugstackArgs, ConfigError> {
    let mut out = PlugstackArgs {
        args: None,
        files: Vec::new(),
    };
    scan(path, read, 0, &mut out)?;
    Ok(out)
}

/// Read one file into `out`; stops at the first line that loads the plugin.
fn scan(
    path: &Path,
    read: &mut Reader,
    depth: usize,
    out: &mut PlugstackArgs,
) -> Result<(), ConfigError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(ConfigError::IncludeDepth {
            path: path.display().to_string(),
            max: MAX_INCLUDE_DEPTH,
        });
    }
    let text = read(path)?;
    out.files.push(path.to_path_buf());
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("include") => {
                let pattern = line["include".len()..].trim();
                for inc in expand(path, n + 1, pattern)? {
                    scan(&inc, read, depth + 1, out)?;
                    if out.args.is_some() {
                        return Ok(());
                    }
                }
            }
            // `required|optional PATH ARGS...`
            Some(_kind) if words.next().is_some_and(|so| so.ends_with(PLUGIN_FILE)) => {
                out.args = Some(words.map(String::from).collect());
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The files an `include` pattern on line `line` of `file` names, sorted.
fn expand(file: &Path, line: usize, pattern: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let bad = |reason: String| ConfigError::BadInclude {
        path: file.display().to_string(),
        line,
        reason,
    };
    if pattern.is_empty() {
        return Err(bad("include without a file pattern".into()));
    }
    let full = match Path::new(pattern).is_absolute() {
        true => PathBuf::from(pattern),
        false => file.parent().unwrap_or(Path::new("/")).join(pattern),
    };
    let full = full
        .to_str()
        .ok_or_else(|| bad("the pattern's directory is not UTF-8".into()))?
        .to_string();
    // As glob(3) without flags: `*` stops at `/` and does not match a leading dot.
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(&full, opts).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for p in paths {
        // Slurm skips unreadable directories silently; a setting we could not see is refused.
        let p = p.map_err(|e| ConfigError::Unreadable {
            path: e.path().display().to_string(),
            reason: e.error().to_string(),
        })?;
        out.push(p);
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn args_of(path: &Path) -> Result<PlugstackArgs, ConfigError> {
        plugin_args(path, &mut read_file)
    }

    #[test]
    fn follows_relative_and_glob_includes_in_order() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("plugstack.conf.d")).unwrap();
        let main = d.path().join("plugstack.conf");
        fs::write(
            &main,
            "required /x/other.so\ninclude plugstack.conf.d/*.conf # c\n",
        )
        .unwrap();
        fs::write(
            d.path().join("plugstack.conf.d/a.conf"),
            "optional /y/pyxis.so\n",
        )
        .unwrap();
        fs::write(
            d.path().join("plugstack.conf.d/b.conf"),
            "required /usr/lib/spank_container_ckpt.so network=n1\n",
        )
        .unwrap();
        fs::write(
            d.path().join("plugstack.conf.d/.hidden.conf"),
            "required /usr/lib/spank_container_ckpt.so network=hidden\n",
        )
        .unwrap();
        let got = args_of(&main).unwrap();
        assert_eq!(got.args, Some(vec!["network=n1".to_string()]));
        assert_eq!(got.files.len(), 3);
    }

    #[test]
    fn absolute_include_and_no_match_are_fine() {
        let d = tempfile::tempdir().unwrap();
        let inc = d.path().join("inc.conf");
        fs::write(&inc, "required spank_container_ckpt.so timeout=9\n").unwrap();
        let main = d.path().join("main.conf");
        fs::write(
            &main,
            format!("include /nonexistent/*.conf\ninclude {}\n", inc.display()),
        )
        .unwrap();
        assert_eq!(
            args_of(&main).unwrap().args,
            Some(vec!["timeout=9".to_string()])
        );
        fs::write(&main, "include nothing-here.conf\n").unwrap();
        assert_eq!(args_of(&main).unwrap().args, None);
    }

    #[test]
    fn include_loops_and_bad_patterns_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("loop.conf");
        fs::write(&main, "include loop.conf\n").unwrap();
        assert!(matches!(
            args_of(&main),
            Err(ConfigError::IncludeDepth { .. })
        ));
        fs::write(&main, "include\n").unwrap();
        assert!(matches!(
            args_of(&main),
            Err(ConfigError::BadInclude { line: 1, .. })
        ));
        fs::write(&main, "\ninclude [unclosed\n").unwrap();
        assert!(matches!(
            args_of(&main),
            Err(ConfigError::BadInclude { line: 2, .. })
        ));
    }

    #[test]
    fn a_reader_error_stops_everything() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("main.conf");
        fs::write(&main, "include inc.conf\n").unwrap();
        fs::write(
            d.path().join("inc.conf"),
            "required spank_container_ckpt.so\n",
        )
        .unwrap();
        let mut refuse_includes = |p: &Path| {
            if p.ends_with("inc.conf") {
                Err(ConfigError::Unreadable {
                    path: p.display().to_string(),
                    reason: "untrusted".into(),
                })
            } else {
                read_file(p)
            }
        };
        assert!(matches!(
            plugin_args(&main, &mut refuse_includes),
            Err(ConfigError::Unreadable { .. })
        ));
    }
}
