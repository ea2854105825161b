//! container_ckpt(8): the manual page of the plugin's user options and site settings, rendered
//! from the option table ([`OptId`]) and the site-config key table ([`KEY_DOCS`]) so that the page
//! cannot drift from what the plugin accepts. Written by the `container-ckpt-man` binary.

use crate::options::OptId;
use slurm_ckpt_site::keydoc::KEY_DOCS;
use slurm_ckpt_site::option_names::DEFAULT_PREFIX;

/// Slurm release the plugin is built for (from its headers): `(major, minor, micro)`.
pub fn slurm_version() -> (u32, u32, u32) {
    let v = crate::ffi::SLURM_VERSION_NUMBER;
    ((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
}

/// Escape text for roff: backslashes, and a leading `.` or `'` that would start a request.
fn esc(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    match s.chars().next() {
        Some('.') | Some('\'') => format!("\\&{s}"),
        _ => s,
    }
}

/// Usage text without Slurm's `[container-ckpt]` prefix, whitespace collapsed.
fn usage_text(id: OptId) -> String {
    let u = id.usage(DEFAULT_PREFIX);
    let u = u.strip_prefix("[container-ckpt]").unwrap_or(&u);
    u.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn render(version: &str) -> String {
    let (maj, min, _) = slurm_version();
    let mut m = String::new();
    m.push_str(&format!(
        ".TH CONTAINER_CKPT 8 \"\" \"slurm-container-ckpt {}\" \"Slurm SPANK plugins\"\n",
        esc(version)
    ));
    m.push_str(".SH NAME\ncontainer_ckpt \\- Slurm SPANK plugin: MPI jobs in per\\-rank Docker containers with checkpoint/restart\n");
    m.push_str(".SH SYNOPSIS\nIn \\fBplugstack.conf\\fR(5) (or a file in /etc/slurm/plugstack.conf.d/):\n.PP\n.nf\n");
    m.push_str("required /usr/lib/x86_64\\-linux\\-gnu/slurm\\-wlm/spank_container_ckpt.so [\\fIkey\\fR=\\fIvalue\\fR ...]\n.fi\n");
    m.push_str(".PP\n\\fBsbatch\\fR|\\fBsalloc\\fR|\\fBsrun\\fR \\fB\\-\\-container\\-image\\fR=\\fIIMAGE\\fR [\\fIoptions\\fR] ...\n");
    m.push_str(".SH DESCRIPTION\nWith \\fB\\-\\-container\\-image\\fR, every task of a job's \\fBsrun\\fR steps runs in its own Docker container \
(fixed hostname, IP and MAC on a cross\\-node container network) and the MPI world, launcher included, lives inside the containers. \
The containers of a job are frozen together on suspend and, with \\fB\\-\\-container\\-ckpt\\fR, checkpointed with CRIU on requeue, \
preemption, on demand (\\fBslurm\\-ckpt checkpoint\\fR) or periodically, and restored on whatever nodes the job gets next. \
The batch script itself runs outside containers.\n");
    m.push_str(".SH OPTIONS\nOptions of \\fBsbatch\\fR, \\fBsalloc\\fR and \\fBsrun\\fR. Precedence: command line, then the options of the \
enclosing sbatch/salloc, then the environment variable. The names shown are those of the default \
\\fBoption_prefix\\fR=container; a site that sets another prefix (to load the plugin beside pyxis) has \
\\fB\\-\\-\\fR\\fIPREFIX\\fR\\fB\\-image\\fR, \\fB\\-mounts\\fR, \\fB\\-env\\fR, \\fB\\-mpi\\fR, \
\\fB\\-checkpoint\\fR, \\fB\\-checkpoint\\-interval\\fR and \\fB\\-checkpoint\\-compress\\fR instead.\n");
    for id in OptId::ALL {
        let arg = match (id.arginfo(), id.has_arg()) {
            (Some(a), _) => format!("=\\fI{}\\fR", esc(a)),
            (None, 2) => "[=\\fIDIR\\fR]".to_string(),
            (None, _) => String::new(),
        };
        m.push_str(&format!(
            // The usage text names the environment variable.
            ".TP\n\\fB\\-\\-{}\\fR{}\n{}\n",
            esc(id.default_name()),
            arg,
            esc(&usage_text(id)),
        ));
    }
    m.push_str(".SH SITE SETTINGS\n\\fIkey\\fR=\\fIvalue\\fR arguments after the plugin path in plugstack.conf. Every key is optional; \
the default is shown. An unknown key, a key given twice or a bad value makes the plugin refuse to load, naming the key. \
\\fBslurm\\-ckpt\\fR reads the same line from /etc/slurm/plugstack.conf (following \\fBinclude\\fR lines).\n");
    for k in KEY_DOCS {
        let def = k.default_value();
        let def = if def.is_empty() {
            "(empty)".to_string()
        } else {
            def
        };
        m.push_str(&format!(
            ".TP\n\\fB{}\\fR=\\fI{}\\fR\n{}\n.br\nDefault: {}\n",
            esc(k.key),
            esc(k.value),
            esc(k.doc),
            esc(&def)
        ));
    }
    m.push_str(&format!(
        ".SH SLURM VERSION\nThis build is for Slurm {maj}.{min:02}. Slurm compares a SPANK plugin's \\fBplugin_version\\fR with its own \
major.minor release when it loads the plugin and refuses a mismatch (\"Incompatible Slurm plugin ... version\"): with a \
\\fBrequired\\fR plugstack.conf line, \\fBsrun\\fR/\\fBsbatch\\fR then fail to initialize the plugin stack and slurmd does not \
start. The Debian package depends on slurm\\-client {maj}.{min:02}; rebuild it when Slurm is upgraded to a new release series.\n"
    ));
    m.push_str(".SH SITE INSTALL\nInstalling the package activates nothing and restarts no service. Per node: run \
\\fBslurm\\-ckpt node\\-setup \\-\\-check\\fR and provide what it reports missing (dockerd with \\fB\\-\\-experimental\\fR, \
\\fB\\-\\-userns\\-remap\\fR and the runtime \\fBslurm\\-ckpt\\fR=/usr/bin/slurm\\-ckpt\\-runc; the remap user's /etc/subuid and \
/etc/subgid ranges; CRIU >= 4.2 with /etc/criu/runc.conf; the container network); then uncomment the line in \
/etc/slurm/plugstack.conf.d/container_ckpt.conf on every node and restart slurmd when no job runs.\n");
    m.push_str(".SH FILES\n.TP\n/usr/lib/x86_64\\-linux\\-gnu/slurm\\-wlm/spank_container_ckpt.so\nThe plugin.\n\
.TP\n/etc/slurm/plugstack.conf.d/container_ckpt.conf\nThe package's plugstack.conf line, commented out as installed.\n\
.TP\n/usr/share/doc/slurm\\-container\\-ckpt/examples/\nExample plugstack.conf, slurm.conf and cgroup.conf settings.\n");
    m.push_str(".SH SEE ALSO\n\\fBslurm\\-ckpt\\fR(1), \\fBspank\\fR(8), \\fBsrun\\fR(1), \\fBsbatch\\fR(1), \\fBslurm.conf\\fR(5), \\fBdockerd\\fR(8), \\fBcriu\\fR(8)\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use slurm_ckpt_site::KEYS;

    #[test]
    fn page_names_every_option_and_setting() {
        let page = render("0.0.0");
        for id in OptId::ALL {
            assert!(
                page.contains(&esc(id.default_name())),
                "{}",
                id.default_name()
            );
            assert!(page.contains(&esc(id.env_var())), "{}", id.env_var());
        }
        for key in KEYS {
            assert!(
                page.contains(&format!(".TP\n\\fB{}\\fR=", esc(key))),
                "{key}"
            );
        }
        // No line may start a roff request by accident.
        for line in page.lines() {
            assert!(!line.starts_with('\''), "{line}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a-b"), "a\\-b");
        assert_eq!(esc(".x"), "\\&.x");
        assert_eq!(esc("a\\b"), "a\\eb");
    }
}
