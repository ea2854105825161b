//! The only place that talks to Slurm's C API: generated bindings, safe wrappers around the
//! SPANK handle, logging, and the symbols Slurm looks up (`plugin_*`, `slurm_spank_*`).
//!
//! Every exported callback runs inside `catch_unwind`: a panic must never unwind into Slurm.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::dispatch;
use crate::options::OptId;

#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    clippy::all
)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/spank_sys.rs"));
}

/// Special step ids (slurm.h): the batch script, the extern step and salloc's interactive step.
pub const SLURM_BATCH_SCRIPT: u32 = sys::SLURM_BATCH_SCRIPT;
pub const SLURM_EXTERN_CONT: u32 = sys::SLURM_EXTERN_CONT;
pub const SLURM_INTERACTIVE_STEP: u32 = sys::SLURM_INTERACTIVE_STEP;

/// The Slurm release the plugin is built for (its headers); also shown in container_ckpt(8).
pub const SLURM_VERSION_NUMBER: u32 = sys::SLURM_VERSION_NUMBER;

/// Return value of a failed callback: Slurm treats any negative value as failure.
pub const CALLBACK_ERROR: c_int = -1;

// ---- symbols Slurm looks up ----------------------------------------------------------------

/// Plugin name; Slurm also derives the environment names of forwarded options from it.
#[no_mangle]
pub static plugin_name: [u8; 15] = *b"container-ckpt\0";
#[no_mangle]
pub static plugin_type: [u8; 6] = *b"spank\0";
/// Must equal the running Slurm's version (major.minor), hence taken from its headers.
#[no_mangle]
pub static plugin_version: c_uint = sys::SLURM_VERSION_NUMBER;

type Handler = fn(&Spank, &[String]) -> c_int;

/// Runs a callback body with panics caught; NULL or invalid argv entries are skipped.
fn entry(name: &str, sp: sys::spank_t, ac: c_int, av: *mut *mut c_char, handler: Handler) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Slurm passes the plugstack.conf arguments as `ac` C strings (or NULL).
        let args = unsafe { c_string_array(av, usize::try_from(ac).ok()) };
        handler(&Spank(sp), &args)
    }));
    match result {
        Ok(rc) => rc,
        Err(panic) => {
            log_error(&format!(
                "{name}: internal error ({}); please report this bug",
                panic_message(&*panic)
            ));
            CALLBACK_ERROR
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

macro_rules! export_callback {
    ($symbol:ident, $handler:path) => {
        #[no_mangle]
        pub extern "C" fn $symbol(sp: sys::spank_t, ac: c_int, av: *mut *mut c_char) -> c_int {
            entry(stringify!($symbol), sp, ac, av, $handler)
        }
    };
}

export_callback!(slurm_spank_init, dispatch::init);
export_callback!(slurm_spank_init_post_opt, dispatch::init_post_opt);
export_callback!(
    slurm_spank_task_init_privileged,
    dispatch::task_init_privileged
);
export_callback!(slurm_spank_task_init, dispatch::task_init);
export_callback!(slurm_spank_job_epilog, dispatch::job_epilog);
export_callback!(slurm_spank_exit, dispatch::exit);

/// Callback of every option: Slurm calls it for each value it parses or forwards.
extern "C" fn option_callback(val: c_int, optarg: *const c_char, remote: c_int) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let arg = if optarg.is_null() {
            None
        } else {
            // SAFETY: non-NULL optarg is a NUL-terminated string owned by Slurm for this call.
            match unsafe { CStr::from_ptr(optarg) }.to_str() {
                Ok(s) => Some(s),
                Err(_) => {
                    log_error("option value is not valid UTF-8");
                    return CALLBACK_ERROR;
                }
            }
        };
        dispatch::option(val, arg, remote != 0)
    }));
    result.unwrap_or_else(|panic| {
        log_error(&format!(
            "option callback: internal error ({}); please report this bug",
            panic_message(&*panic)
        ));
        CALLBACK_ERROR
    })
}

// ---- safe wrappers -----------------------------------------------------------------------

/// A SPANK call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpankError {
    #[error("{call} failed: {message}")]
    Call { call: &'static str, message: String },
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
}

fn spank_err(call: &'static str, rc: sys::spank_err_t) -> SpankError {
    // SAFETY: spank_strerror returns a static string (or NULL) for any code.
    let text = unsafe { sys::spank_strerror(rc) };
    let message = if text.is_null() {
        format!("error {rc}")
    } else {
        // SAFETY: checked non-NULL; Slurm's error strings are NUL-terminated and static.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    };
    SpankError::Call { call, message }
}

fn cstring(what: &str, s: &str) -> Result<CString, SpankError> {
    CString::new(s).map_err(|_| SpankError::Nul {
        what: what.to_string(),
    })
}

/// Where the plugin is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// srun
    Local,
    /// slurmstepd
    Remote,
    /// sbatch / salloc
    Allocator,
    Slurmd,
    /// prolog / epilog
    JobScript,
    Error,
}

/// Job items read as a 32-bit unsigned value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    JobUid,
    JobGid,
    JobId,
    JobStepId,
    JobNnodes,
    TotalTaskCount,
    TaskGlobalId,
    RestartCount,
    LocalTaskCount,
    CpusPerTask,
}

impl Item {
    fn raw(self) -> sys::spank_item_t {
        match self {
            Item::JobUid => sys::spank_item_S_JOB_UID,
            Item::JobGid => sys::spank_item_S_JOB_GID,
            Item::JobId => sys::spank_item_S_JOB_ID,
            Item::JobStepId => sys::spank_item_S_JOB_STEPID,
            Item::JobNnodes => sys::spank_item_S_JOB_NNODES,
            Item::TotalTaskCount => sys::spank_item_S_JOB_TOTAL_TASK_COUNT,
            Item::TaskGlobalId => sys::spank_item_S_TASK_GLOBAL_ID,
            Item::RestartCount => sys::spank_item_S_SLURM_RESTART_COUNT,
            Item::LocalTaskCount => sys::spank_item_S_JOB_LOCAL_TASK_COUNT,
            Item::CpusPerTask => sys::spank_item_S_STEP_CPUS_PER_TASK,
        }
    }
}

/// The handle Slurm passes to a callback; valid only during that callback.
pub struct Spank(sys::spank_t);

impl Spank {
    pub fn context(&self) -> Context {
        // SAFETY: no arguments; reads Slurm's global plugin stack.
        match unsafe { sys::spank_context() } {
            sys::spank_context_S_CTX_LOCAL => Context::Local,
            sys::spank_context_S_CTX_REMOTE => Context::Remote,
            sys::spank_context_S_CTX_ALLOCATOR => Context::Allocator,
            sys::spank_context_S_CTX_SLURMD => Context::Slurmd,
            sys::spank_context_S_CTX_JOB_SCRIPT => Context::JobScript,
            _ => Context::Error,
        }
    }

    /// A `uint32_t`/`uid_t`/`gid_t` item (all 32-bit on Linux).
    pub fn get_item_u32(&self, item: Item) -> Result<u32, SpankError> {
        let mut value: u32 = 0;
        // SAFETY: each of these items takes exactly one `uint32_t *`-sized out pointer.
        let rc = unsafe { sys::spank_get_item(self.0, item.raw(), &mut value as *mut u32) };
        if rc == sys::ESPANK_SUCCESS {
            Ok(value)
        } else {
            Err(spank_err("spank_get_item", rc))
        }
    }

    /// The step's memory on this node in MB (S_STEP_ALLOC_MEM, a `uint64_t`); 0 = not limited.
    pub fn step_alloc_mem_mb(&self) -> Result<u64, SpankError> {
        let mut value: u64 = 0;
        // SAFETY: S_STEP_ALLOC_MEM takes exactly one `uint64_t *`.
        let rc = unsafe {
            sys::spank_get_item(
                self.0,
                sys::spank_item_S_STEP_ALLOC_MEM,
                &mut value as *mut u64,
            )
        };
        if rc == sys::ESPANK_SUCCESS {
            Ok(value)
        } else {
            Err(spank_err("spank_get_item(S_STEP_ALLOC_MEM)", rc))
        }
    }

    /// The task's id among the step's tasks on this node (S_TASK_ID, an `int`).
    pub fn task_local_id(&self) -> Result<u32, SpankError> {
        let mut value: c_int = -1;
        // SAFETY: S_TASK_ID takes exactly one `int *`.
        let rc = unsafe {
            sys::spank_get_item(self.0, sys::spank_item_S_TASK_ID, &mut value as *mut c_int)
        };
        if rc != sys::ESPANK_SUCCESS {
            return Err(spank_err("spank_get_item(S_TASK_ID)", rc));
        }
        u32::try_from(value).map_err(|_| SpankError::Call {
            call: "spank_get_item(S_TASK_ID)",
            message: format!("negative task id {value}"),
        })
    }

    /// The step's allocated cores on this node in list form, e.g. "0-3" (S_STEP_ALLOC_CORES, Slurm's
    /// abstract core ids); None when Slurm has no list.
    pub fn step_alloc_cores(&self) -> Result<Option<String>, SpankError> {
        let mut list: *mut c_char = std::ptr::null_mut();
        // SAFETY: S_STEP_ALLOC_CORES takes exactly one `char **`.
        let rc = unsafe {
            sys::spank_get_item(
                self.0,
                sys::spank_item_S_STEP_ALLOC_CORES,
                &mut list as *mut *mut c_char,
            )
        };
        if rc != sys::ESPANK_SUCCESS {
            return Err(spank_err("spank_get_item(S_STEP_ALLOC_CORES)", rc));
        }
        if list.is_null() {
            return Ok(None);
        }
        // SAFETY: non-NULL: a NUL-terminated string owned by slurmstepd for the step's lifetime.
        Ok(Some(
            unsafe { CStr::from_ptr(list) }
                .to_string_lossy()
                .into_owned(),
        ))
    }

    /// The task's command line (S_JOB_ARGV); non-UTF-8 bytes are an error, not silently changed.
    pub fn job_argv(&self) -> Result<Vec<String>, SpankError> {
        let mut argc: c_int = 0;
        let mut argv: *mut *mut c_char = std::ptr::null_mut();
        // SAFETY: S_JOB_ARGV takes (int *, char ***).
        let rc = unsafe {
            sys::spank_get_item(
                self.0,
                sys::spank_item_S_JOB_ARGV,
                &mut argc as *mut c_int,
                &mut argv as *mut _,
            )
        };
        if rc != sys::ESPANK_SUCCESS {
            return Err(spank_err("spank_get_item(S_JOB_ARGV)", rc));
        }
        // SAFETY: Slurm returns argc entries (or NULL argv) that live as long as the step.
        let raw = unsafe { c_bytes_array(argv, usize::try_from(argc).ok()) };
        raw.into_iter()
            .enumerate()
            .map(|(i, b)| {
                String::from_utf8(b).map_err(|_| SpankError::Call {
                    call: "spank_get_item(S_JOB_ARGV)",
                    message: format!("argument {i} is not valid UTF-8"),
                })
            })
            .collect()
    }

    /// The job environment (S_JOB_ENV) as exact bytes, for passing on to exec.
    pub fn job_env_raw(&self) -> Result<Vec<CString>, SpankError> {
        let mut env: *mut *mut c_char = std::ptr::null_mut();
        // SAFETY: S_JOB_ENV takes (char ***).
        let rc =
            unsafe { sys::spank_get_item(self.0, sys::spank_item_S_JOB_ENV, &mut env as *mut _) };
        if rc != sys::ESPANK_SUCCESS {
            return Err(spank_err("spank_get_item(S_JOB_ENV)", rc));
        }
        // SAFETY: a NULL-terminated array (or NULL) owned by slurmstepd.
        let raw = unsafe { c_bytes_array(env, None) };
        Ok(raw
            .into_iter()
            .filter_map(|b| CString::new(b).ok())
            .collect())
    }

    /// The job environment for lookups; entries that are not UTF-8 are skipped.
    pub fn job_env(&self) -> Result<Vec<String>, SpankError> {
        Ok(self
            .job_env_raw()?
            .into_iter()
            .filter_map(|c| c.into_string().ok())
            .collect())
    }

    /// A variable of the job environment (remote context only).
    #[allow(dead_code)] // wrapper API; the plugin currently reads the whole job env once
    pub fn getenv(&self, name: &str) -> Result<Option<String>, SpankError> {
        let cname = cstring("variable name", name)?;
        let mut len: usize = 4096;
        loop {
            let mut buf = vec![0u8; len];
            let clen = c_int::try_from(len).unwrap_or(c_int::MAX);
            // SAFETY: buf is writable for `clen` bytes; Slurm NUL-terminates within it.
            let rc =
                unsafe { sys::spank_getenv(self.0, cname.as_ptr(), buf.as_mut_ptr().cast(), clen) };
            match rc {
                sys::ESPANK_SUCCESS => {
                    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                    buf.truncate(end);
                    return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
                }
                sys::slurm_err_t_ESPANK_ENV_NOEXIST => return Ok(None),
                sys::slurm_err_t_ESPANK_NOSPACE if len < (1 << 20) => len *= 4,
                rc => return Err(spank_err("spank_getenv", rc)),
            }
        }
    }

    /// Value of one of our options where Slurm can tell (prolog/epilog: the job's
    /// `SPANK__SLURM_SPANK_OPTION_*` variables). `Some("")` = given without argument.
    pub fn option_getopt(&self, id: OptId, prefix: &str) -> Result<Option<String>, SpankError> {
        let name = cstring("option name", &id.name(prefix))?;
        let usage = cstring("option usage", &id.usage(prefix))?;
        let mut opt = sys::spank_option {
            name: name.as_ptr().cast_mut(),
            arginfo: std::ptr::null_mut(),
            usage: usage.as_ptr().cast_mut(),
            has_arg: id.has_arg(),
            val: id.val(),
            cb: None,
        };
        let mut optarg: *mut c_char = std::ptr::null_mut();
        // SAFETY: opt's strings outlive the call (Slurm copies what it keeps); optarg is an out pointer.
        let rc = unsafe { sys::spank_option_getopt(self.0, &mut opt, &mut optarg) };
        match rc {
            sys::ESPANK_SUCCESS if optarg.is_null() => Ok(Some(String::new())),
            // SAFETY: on success a non-NULL optarg is a NUL-terminated string cached by Slurm.
            sys::ESPANK_SUCCESS => Ok(Some(
                unsafe { CStr::from_ptr(optarg) }
                    .to_string_lossy()
                    .into_owned(),
            )),
            sys::slurm_err_t_ESPANK_ERROR => Ok(None),
            rc => Err(spank_err("spank_option_getopt", rc)),
        }
    }

    /// Registers one option of the table under the site's `option_prefix` (slurm_spank_init only).
    pub fn register_option(&self, id: OptId, prefix: &str) -> Result<(), SpankError> {
        let name = cstring("option name", &id.name(prefix))?;
        let arginfo = id
            .arginfo()
            .map(|a| cstring("option arginfo", a))
            .transpose()?;
        let usage = cstring("option usage", &id.usage(prefix))?;
        let mut opt = sys::spank_option {
            name: name.as_ptr().cast_mut(),
            arginfo: arginfo
                .as_ref()
                .map_or(std::ptr::null_mut(), |a| a.as_ptr().cast_mut()),
            usage: usage.as_ptr().cast_mut(),
            has_arg: id.has_arg(),
            val: id.val(),
            cb: Some(option_callback),
        };
        // SAFETY: spank_option_register copies name/arginfo/usage (xstrdup) before returning.
        let rc = unsafe { sys::spank_option_register(self.0, &mut opt) };
        if rc == sys::ESPANK_SUCCESS {
            Ok(())
        } else {
            Err(spank_err("spank_option_register", rc))
        }
    }
}

/// Set a variable of the job's environment from sbatch/salloc/srun. `spank_setenv` works only in
/// slurmstepd (ESPANK_NOT_REMOTE elsewhere); there the job's environment is this process's own,
/// which sbatch/salloc/srun copy into the job after `init_post_opt` (SLURM_* names even with
/// `--export=NONE`).
pub fn set_submit_env(name: &str, value: &str) {
    std::env::set_var(name, value);
}

/// CPU ids in the calling thread's affinity mask (sched_getaffinity); None if it cannot be read.
pub fn cpu_affinity() -> Option<Vec<u32>> {
    const WORD_BITS: usize = std::mem::size_of::<libc::c_ulong>() * 8;
    // Room for 1024 CPUs first; the kernel refuses (EINVAL) a buffer smaller than its own mask.
    let mut words = 1024 / WORD_BITS;
    loop {
        let mut mask: Vec<libc::c_ulong> = vec![0; words];
        let bytes = words * std::mem::size_of::<libc::c_ulong>();
        // SAFETY: `mask` is writable for `bytes` bytes; the kernel writes at most that many.
        let rc = unsafe { libc::sched_getaffinity(0, bytes, mask.as_mut_ptr().cast()) };
        if rc == 0 {
            let ids =
                (0..words * WORD_BITS).filter(|i| mask[i / WORD_BITS] >> (i % WORD_BITS) & 1 == 1);
            return Some(ids.filter_map(|i| u32::try_from(i).ok()).collect());
        }
        let einval = std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL);
        if !einval || words * WORD_BITS >= 1 << 16 {
            return None;
        }
        words *= 4;
    }
}

/// Copies a C string array: `len` entries, or up to the NULL terminator when `len` is None.
/// NULL array = empty; NULL entries are skipped.
///
/// # Safety
/// `av` must be NULL or point to `len` (or NULL-terminated) pointers to NUL-terminated strings.
unsafe fn c_bytes_array(av: *mut *mut c_char, len: Option<usize>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if av.is_null() {
        return out;
    }
    let mut i = 0usize;
    loop {
        if len.is_some_and(|n| i >= n) {
            break;
        }
        // SAFETY: i is within `len`, or before the NULL terminator (guaranteed by the caller).
        let p = unsafe { *av.add(i) };
        if p.is_null() {
            if len.is_none() {
                break;
            }
        } else {
            // SAFETY: non-NULL entries are NUL-terminated strings.
            out.push(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec());
        }
        i += 1;
    }
    out
}

/// # Safety
/// As [`c_bytes_array`].
unsafe fn c_string_array(av: *mut *mut c_char, len: Option<usize>) -> Vec<String> {
    // SAFETY: forwarded contract.
    unsafe { c_bytes_array(av, len) }
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

// ---- logging -----------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Level {
    Error,
    Info,
    Verbose,
    Debug,
}

/// Logs through Slurm (slurmd/slurmstepd log, or stderr in sbatch/srun), always with a "%s"
/// format so that user text is never interpreted as a format string.
fn log(level: Level, msg: &str) {
    let text = format!("{}: {msg}", crate::config::MESSAGE_PREFIX).replace('\0', "\\0");
    let Ok(text) = CString::new(text) else { return };
    let fmt = c"%s".as_ptr();
    // SAFETY: "%s" consumes exactly the one NUL-terminated string argument passed.
    unsafe {
        match level {
            Level::Error => sys::slurm_error(fmt, text.as_ptr()),
            Level::Info => sys::slurm_info(fmt, text.as_ptr()),
            Level::Verbose => sys::slurm_verbose(fmt, text.as_ptr()),
            Level::Debug => sys::slurm_debug(fmt, text.as_ptr()),
        }
    }
}

pub fn log_error(msg: &str) {
    log(Level::Error, msg)
}

/// Info goes to users' terminals in sbatch/srun, so it is used sparingly.
pub fn log_info(msg: &str) {
    log(Level::Info, msg)
}

pub fn log_verbose(msg: &str) {
    log(Level::Verbose, msg)
}

pub fn log_debug(msg: &str) {
    log(Level::Debug, msg)
}
