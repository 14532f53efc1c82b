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
pub struct Input {
    pub file: File,
    pub len: Option<u64>,
    pub name: String,
}

fn is_stdio(p: &Option<PathBuf>) -> bool {
    p.as_deref().is_none_or(|p| p == Path::new("-"))
}

/// Opens `path`, or stdin for `-`/absent. Stdin is used through a duplicated descriptor so that
/// reads are not buffered twice.
pub fn open_input(path: &Option<PathBuf>) -> Result<Input, Failure> {
    if is_stdio(path) {
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
/// Like `cp`, `rsync` and `aws s3 cp`, the file is not flushed to disk unless asked (`--fsync`):
/// the rename protects against s3crypt failing or being killed, not against the machine losing
/// power, after which the file system may show an empty or short file under the name.
pub enum Output {
    Stdout(File),
    Direct(File),
    Atomic {
        tmp: tempfile::NamedTempFile,
        target: PathBuf,
        /// `Some` when the file is to be flushed to disk before the rename.
        fsync: Option<Writeback>,
    },
}

/// Early writeback for files that are flushed to disk before they are renamed into place: every
/// [`Writeback::STEP`] bytes, the kernel is asked to start writing out what was written so far
/// (`posix_fadvise(DONTNEED)` starts writeback without waiting), so the disk works while the
/// transfer goes on and the final fsync has little left to do.
#[derive(Debug, Default)]
pub struct Writeback {
    written: u64,
    advised: u64,
}

impl Writeback {
    const STEP: u64 = 8 << 20;

    fn wrote(&mut self, file: &File, n: usize) {
        self.written += n as u64;
        if self.written - self.advised >= Self::STEP {
            let upto = self.written;
            // Advice only: a failure changes nothing but speed.
            let _ = rustix::fs::fadvise(
                file,
                self.advised,
                std::num::NonZeroU64::new(upto - self.advised),
                rustix::fs::Advice::DontNeed,
            );
            self.advised = upto;
        }
    }
}

impl Output {
    /// Opens the output. `binary` refuses to write to a terminal; `fsync` flushes a file to disk
    /// before [`Output::commit`] renames it into place (and its directory after).
    pub fn open(path: &Option<PathBuf>, binary: bool, fsync: bool) -> Result<Self, Failure> {
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
            .prefix(".s3crypt-")
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| {
                Failure::Io(
                    format!("cannot create a temporary file in {}", dir.display()),
                    e,
                )
            })?;
        Ok(Output::Atomic {
            tmp,
            target,
            fsync: fsync.then(Writeback::default),
        })
    }

    /// Makes the output visible under its name: rename (with `fsync`: flush the file first and
    /// the directory after).
    pub fn commit(self) -> Result<(), Failure> {
        match self {
            Output::Stdout(mut f) | Output::Direct(mut f) => f
                .flush()
                .map_err(|e| Failure::Io("cannot write output".into(), e)),
            Output::Atomic { tmp, target, fsync } => {
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

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(f) | Output::Direct(f) => f.write(buf),
            Output::Atomic { tmp, fsync, .. } => {
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
pub fn write_failure(e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::BrokenPipe,
        _ => Failure::Io("cannot write output".into(), e),
    }
}

/// Writes a download's plaintext into `sink` on a blocking thread, then runs `finish` (fsync and
/// rename, say) there too: file-system writes, which can stall for a long time when the disk
/// falls behind, never hold up the async threads that drive the network. Returns what `finish`
/// returned and the byte count; `progress` sees each chunk as it is handed over.
///
/// On a download error the sink is dropped without `finish` (an atomic output then removes its
/// temporary file) and the error is returned; a write error stops the download.
pub async fn drain<S, T>(
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
pub fn progress(len: Option<u64>, quiet: bool) -> ProgressBar {
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
