//! Input and output endpoints: files, stdin/stdout, atomic output files, progress.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exit::Failure;

/// An opened input and its length when known (regular files).
pub(crate) struct Input {
    pub file: File,
    pub len: Option<u64>,
    pub name: String,
}

fn is_stdio(p: &Option<PathBuf>) -> bool {
    p.as_deref().is_none_or(|p| p == Path::new("-"))
}

/// Opens `path`, or stdin for `-`/absent. Stdin is used through a duplicated descriptor so that
/// reads are not buffered twice.
pub(crate) fn open_input(path: &Option<PathBuf>) -> Result<Input, Failure> {
    if is_stdio(path) {
        if std::io::stdin().is_terminal() {
            // Otherwise a command run without its input argument just seems to hang.
            eprintln!(
                "s3crypt: reading from stdin (this terminal): give a file, or pipe the input in; \
                 Ctrl-D ends it"
            );
        }
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Failure::Io("cannot use stdin".into(), e))?;
        let file = File::from(fd);
        let len = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        return Ok(Input {
            file,
            len,
            name: "stdin".into(),
        });
    }
    let p = path.as_deref().unwrap_or(Path::new("-"));
    let file = File::open(p).map_err(|e| Failure::Io(format!("cannot open {}", p.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::Io(format!("cannot read {}", p.display()), e))?;
    if meta.is_dir() {
        return Err(Failure::Usage(format!("{} is a directory", p.display())));
    }
    Ok(Input {
        file,
        len: meta.is_file().then_some(meta.len()),
        name: p.display().to_string(),
    })
}

/// Where output goes. A regular-file target is written under a temporary name in the same
/// directory and renamed into place by [`Output::commit`]; dropping an uncommitted output removes
/// the temporary file, so a failure never leaves output under the target name.
///
/// Temporary files that a killed s3crypt left in the directory are swept when another output is
/// opened there (see [`crate::partials`]).
///
/// Like `cp`, `rsync` and `aws s3 cp`, the file is not flushed to disk unless asked (`--fsync`):
/// the rename protects against s3crypt failing or being killed, not against the machine losing
/// power, after which the file system may show an empty or short file under the name.
pub(crate) enum Output {
    Stdout(File),
    Direct(File),
    Atomic {
        tmp: tempfile::NamedTempFile,
        target: PathBuf,
        /// `Some` when the file is to be flushed to disk before the rename.
        fsync: Option<Writeback>,
        /// Removed if the process exits on a signal (see [`crate::signals`]).
        _tracked: crate::signals::Tracked,
    },
}

/// Early writeback for files that are flushed to disk before they are renamed into place: every
/// [`Writeback::STEP`] bytes, the kernel is asked to start writing out what was written so far
/// (`posix_fadvise(DONTNEED)` starts writeback without waiting), so the disk works while the
/// transfer goes on and the final fsync has little left to do.
#[derive(Debug, Default)]
pub(crate) struct Writeback {
    written: u64,
    advised: u64,
}

impl Writeback {
    const STEP: u64 = 8 << 20;

    fn wrote(&mut self, file: &File, n: usize) {
        self.written += n as u64;
        if self.written - self.advised >= Self::STEP {
            start_writeback(file, self.advised..self.written);
            self.advised = self.written;
        }
    }
}

/// Asks the kernel to start writing `range` of `file` out to disk without waiting for it
/// (`posix_fadvise(DONTNEED)`). Advice only: a failure changes nothing but speed.
fn start_writeback(file: &File, range: std::ops::Range<u64>) {
    let _ = rustix::fs::fadvise(
        file,
        range.start,
        std::num::NonZeroU64::new(range.end - range.start),
        rustix::fs::Advice::DontNeed,
    );
}

impl Output {
    /// Opens the output. `binary` refuses to write to a terminal; `fsync` flushes a file to disk
    /// before [`Output::commit`] renames it into place (and its directory after).
    pub(crate) fn open(
        path: &Option<PathBuf>,
        binary: bool,
        fsync: bool,
        mode: Option<u32>,
    ) -> Result<Self, Failure> {
        if is_stdio(path) {
            if binary && std::io::stdout().is_terminal() {
                return Err(Failure::Usage(
                    "refusing to write binary ciphertext to a terminal; use -o FILE or redirect stdout".into(),
                ));
            }
            let fd = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Failure::Io("cannot use stdout".into(), e))?;
            return Ok(Output::Stdout(File::from(fd)));
        }
        let target = path.clone().unwrap_or_default();
        // Devices, pipes and other special files are written directly (e.g. /dev/null).
        if let Ok(meta) = std::fs::metadata(&target) {
            if meta.is_dir() {
                return Err(Failure::Usage(format!(
                    "{} is a directory",
                    target.display()
                )));
            }
            if !meta.is_file() {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(|e| Failure::Io(format!("cannot open {}", target.display()), e))?;
                return Ok(Output::Direct(f));
            }
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(crate::partials::PREFIX)
            .suffix(crate::partials::SUFFIX)
            .rand_bytes(6)
            .tempfile_in(&dir)
            .map_err(|e| {
                Failure::Io(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                )
            })?;
        // Ours is in use (no other run's sweep takes it); leftovers of killed runs are not.
        crate::partials::hold(tmp.as_file());
        // Created 0600 (it may hold plaintext); --mode sets other bits, whatever the umask.
        if let Some(m) = mode {
            rustix::fs::fchmod(tmp.as_file(), rustix::fs::Mode::from_raw_mode(m)).map_err(|e| {
                Failure::Io(
                    format!("cannot set the mode of {}", target.display()),
                    e.into(),
                )
            })?;
        }
        let flags = rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::CLOEXEC;
        if let Ok(d) = rustix::fs::open(&dir, flags, rustix::fs::Mode::empty()) {
            crate::partials::sweep(d);
        }
        Ok(Output::Atomic {
            _tracked: crate::signals::track(tmp.path().to_path_buf()),
            tmp,
            target,
            fsync: fsync.then(Writeback::default),
        })
    }

    /// Makes the output visible under its name: rename (with `fsync`: flush the file first and
    /// the directory after).
    pub(crate) fn commit(self) -> Result<(), Failure> {
        match self {
            Output::Stdout(mut f) | Output::Direct(mut f) => f
                .flush()
                .map_err(|e| Failure::Io("cannot write output".into(), e)),
            Output::Atomic {
                tmp, target, fsync, ..
            } => {
                let cannot = |e| Failure::Io(format!("cannot write {}", target.display()), e);
                if fsync.is_some() {
                    tmp.as_file().sync_all().map_err(cannot)?;
                }
                tmp.persist(&target).map_err(|e| {
                    Failure::Io(
                        format!("cannot rename output into place at {}", target.display()),
                        e.error,
                    )
                })?;
                if fsync.is_some() {
                    let dir = match target.parent() {
                        Some(d) if !d.as_os_str().is_empty() => d,
                        _ => Path::new("."),
                    };
                    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
                        Failure::Io(
                            format!(
                                "{} is in place, but flushing its directory to disk failed",
                                target.display()
                            ),
                            e,
                        )
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// Bytes per write call into an output (see `s3crypt`'s downloads, which write files in pieces
/// of the same size): larger writes make the page cache allocate large folios, whose fresh
/// memory is slow to touch on virtual machines that hand free memory back to the host.
pub(crate) const WRITE_CHUNK: usize = 64 << 10;

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            // Pipes and devices take a batch in one call.
            Output::Stdout(f) | Output::Direct(f) => f.write(buf),
            Output::Atomic { tmp, fsync, .. } => {
                // Files: in page-cache-friendly pieces.
                let buf = &buf[..buf.len().min(WRITE_CHUNK)];
                let n = tmp.as_file_mut().write(buf)?;
                if let Some(w) = fsync {
                    w.wrote(tmp.as_file(), n);
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(f) | Output::Direct(f) => f.flush(),
            Output::Atomic { tmp, .. } => tmp.as_file_mut().flush(),
        }
    }
}

/// A write error as the CLI reports it (a closed pipe ends quietly, see [`Failure::BrokenPipe`]).
pub(crate) fn write_failure(e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::BrokenPipe,
        _ => Failure::Io("cannot write output".into(), e),
    }
}

/// An output that may take writes at offsets: a regular file under a temporary name. Streams
/// (stdout, pipes, devices) are written in order.
pub(crate) trait Positional {
    /// The file to write at offsets, if this output is one.
    fn positional(&self) -> Option<&File>;
    /// Whether each piece is to be sent on its way to disk as soon as it is written (the file is
    /// flushed before it is renamed into place).
    fn early_writeback(&self) -> bool;
}

impl Positional for Output {
    fn positional(&self) -> Option<&File> {
        match self {
            Output::Atomic { tmp, .. } => Some(tmp.as_file()),
            Output::Stdout(_) | Output::Direct(_) => None,
        }
    }

    fn early_writeback(&self) -> bool {
        matches!(self, Output::Atomic { fsync: Some(_), .. })
    }
}

/// A positional output shared by the download's writers.
struct At<S> {
    sink: S,
    /// Set once a write failed (to tell write errors from download errors).
    write_failed: AtomicBool,
}

impl<S: Positional + Send + Sync + 'static> s3crypt::PositionalSink for At<S> {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let file = self
            .sink
            .positional()
            .ok_or_else(|| std::io::Error::other("not a positional output"))?;
        let r = std::os::unix::fs::FileExt::write_all_at(file, buf, offset);
        if r.is_err() {
            self.write_failed.store(true, Ordering::SeqCst);
        } else if self.sink.early_writeback() {
            // A write that ends past a multiple of STEP sends the STEP bytes before that multiple
            // on their way to disk (pieces are written front to back, so they are mostly
            // written by now).
            const STEP: u64 = 1 << 20;
            let end = offset + buf.len() as u64;
            if end / STEP > offset / STEP && end >= STEP {
                let from = (end / STEP - 1) * STEP;
                start_writeback(file, from..from + STEP);
            }
        }
        r
    }

    fn allocate(&self, len: u64) -> std::io::Result<()> {
        let Some((file, len)) = self.sink.positional().zip(std::num::NonZeroU64::new(len)) else {
            return Ok(());
        };
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len.get()) {
            Ok(()) => Ok(()),
            // File systems that cannot reserve space (tmpfs can, NFS may not) just write.
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => Ok(()),
            Err(e) => {
                self.write_failed.store(true, Ordering::SeqCst);
                Err(e.into())
            }
        }
    }
}

/// Writes a download's plaintext into `sink`, then runs `finish` (fsync and rename, say) on a
/// blocking thread. A regular file takes the plaintext at its offsets, pieces written in parallel
/// as they authenticate, in any order ([`s3crypt::PlaintextStream::write_at`]); anything else
/// is written in order ([`drain`]). Returns what `finish` returned and the byte count;
/// `progress` sees each piece once it is written.
///
/// On a download or write error the sink is dropped without `finish` (an atomic output then
/// removes its temporary file) and the error is returned; so it is when this future is dropped.
pub(crate) async fn save<S, T>(
    body: s3crypt::PlaintextStream,
    sink: S,
    finish: impl FnOnce(S) -> Result<T, Failure> + Send + 'static,
    progress: impl FnMut(u64) + Send,
) -> Result<(T, u64), Failure>
where
    S: Write + Positional + Send + Sync + 'static,
    T: Send + 'static,
{
    if sink.positional().is_none() {
        return drain(body, sink, finish, progress).await;
    }
    let at = Arc::new(At {
        sink,
        write_failed: AtomicBool::new(false),
    });
    let n = match body.write_at(Arc::clone(&at), progress).await {
        Ok(n) => n,
        Err(s3crypt::Error::Io(e)) if at.write_failed.load(Ordering::SeqCst) => {
            return Err(write_failure(e))
        }
        Err(e) => return Err(e.into()),
    };
    // Every piece was written and its writer is gone: the output is ours again.
    let at = Arc::try_unwrap(at).map_err(|_| {
        Failure::Io(
            "cannot write output".into(),
            std::io::Error::other("the output is still in use"),
        )
    })?;
    let t = tokio::task::spawn_blocking(move || finish(at.sink))
        .await
        .map_err(|e| Failure::Io("the writer stopped".into(), std::io::Error::other(e)))??;
    Ok((t, n))
}

/// Writes a download's plaintext into `sink` on a blocking thread, then runs `finish` (fsync and
/// rename, say) there too: file-system writes, which can stall for a long time when the disk
/// falls behind, never hold up the async threads that drive the network. Returns what `finish`
/// returned and the byte count; `progress` sees each chunk as it is handed over.
///
/// On a download error the sink is dropped without `finish` (an atomic output then removes its
/// temporary file) and the error is returned; a write error stops the download.
pub(crate) async fn drain<S, T>(
    mut body: s3crypt::PlaintextStream,
    sink: S,
    finish: impl FnOnce(S) -> Result<T, Failure> + Send + 'static,
    mut progress: impl FnMut(u64),
) -> Result<(T, u64), Failure>
where
    S: Write + Send + 'static,
    T: Send + 'static,
{
    // A few chunks of slack let the network run ahead of a momentarily slow disk.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
    // Set when this future is dropped before the end (Ctrl-C): the writer then drops the sink
    // (removing a temporary file) instead of finishing it, even if the end marker was queued.
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut guard = CancelOnDrop {
        flag: Arc::clone(&cancelled),
        armed: true,
    };
    let writer = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let mut complete = false;
        while let Some(chunk) = rx.blocking_recv() {
            if chunk.is_empty() {
                // The end marker: everything arrived and verified.
                complete = true;
                break;
            }
            sink.write_all(&chunk).map_err(write_failure)?;
        }
        if complete && !cancelled.load(Ordering::SeqCst) {
            finish(sink).map(Some)
        } else {
            Ok(None)
        }
    });
    let mut n = 0u64;
    let mut failed = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => {
                let len = chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    // The writer stopped: its error is reported below.
                    break;
                }
                n += len;
                progress(len);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() {
        let _ = tx.send(bytes::Bytes::new()).await;
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Failure::Io("the writer stopped".into(), std::io::Error::other(e)))?;
    guard.armed = false;
    if let Some(e) = failed {
        return Err(e.into());
    }
    match written? {
        Some(t) => Ok((t, n)),
        None => Err(Failure::Io(
            "cannot write output".into(),
            std::io::Error::other("the writer stopped early"),
        )),
    }
}

/// Sets its flag when dropped while armed (see [`drain`]).
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// A progress bar on stderr when it is a terminal and not `--quiet`; hidden otherwise.
pub(crate) fn progress(len: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
    bar
}

/// Whether progress and summaries are shown: stderr is a terminal and not `--quiet`.
pub(crate) fn interactive(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// `12.3 MiB in 1.5 s (8.2 MiB/s)`.
fn amount(bytes: u64, started: std::time::Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        format!(" ({}/s)", human((bytes as f64 / secs) as u64))
    } else {
        String::new()
    };
    format!("{} in {secs:.1} s{rate}", human(bytes))
}

/// The one line a finished transfer prints on a terminal (not with `--quiet`, not when stderr
/// is not a terminal): `s3crypt: uploaded 12.3 MiB in 1.5 s (8.2 MiB/s): s3://b/k`.
pub(crate) fn summary(
    quiet: bool,
    verb: &str,
    bytes: u64,
    started: std::time::Instant,
    what: &str,
) {
    if interactive(quiet) {
        eprintln!(
            "s3crypt: {verb} {}: {}",
            amount(bytes, started),
            s3crypt_core::text::printable(what, usize::MAX)
        );
    }
}

/// The progress of a recursive transfer: a bar of files done, with the bytes moved so far, and a
/// one-line summary at the end (on a terminal, without `--quiet`; nothing otherwise).
pub(crate) struct Overall {
    bar: ProgressBar,
    bytes: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
    verb: &'static str,
    visible: bool,
}

impl Overall {
    pub(crate) fn new(verb: &'static str, files: u64, quiet: bool) -> Arc<Self> {
        let visible = interactive(quiet);
        let bar = match visible {
            true => {
                let b = ProgressBar::new(files).with_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}  ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
                b
            }
            false => ProgressBar::hidden(),
        };
        Arc::new(Self {
            bar,
            bytes: Default::default(),
            started: std::time::Instant::now(),
            verb,
            visible,
        })
    }

    /// `n` more bytes moved.
    pub(crate) fn bytes(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if self.visible {
            self.bar.set_message(amount(total, self.started));
        }
    }

    /// One more file done.
    pub(crate) fn file_done(&self) {
        self.bar.inc(1);
    }

    /// Clears the bar and prints the summary.
    pub(crate) fn finish(&self, failed: usize) {
        self.bar.finish_and_clear();
        if self.visible {
            let done = self.bar.position();
            let failed = match failed {
                0 => String::new(),
                n => format!(", {n} failed"),
            };
            eprintln!(
                "s3crypt: {} {done} file(s), {}{failed}",
                self.verb,
                amount(self.bytes.load(Ordering::Relaxed), self.started)
            );
        }
    }
}

/// A size as `aws s3 ls --human-readable` writes it (`12 Bytes`, `4.0 KiB`, `1.5 GiB`).
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} Bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}
