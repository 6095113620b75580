//! A moto server child process on a free loopback port, stopped when dropped (or when we die).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{StackError, repo_root};

/// How long moto may take to answer its first request.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How many of moto's last log lines a startup error carries.
const LOG_LINES: usize = 20;

/// A running `moto_server`. Dropping it kills the process and reaps it; the process is also
/// killed by the kernel (`PR_SET_PDEATHSIG`) if this process dies first.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    pid: u32,
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
    http: reqwest::Client,
}

impl Moto {
    /// The `moto_server` to run: `$MOTO_SERVER` if set, else `<repo>/.venv/bin/moto_server`
    /// (installed by `make setup`), else `moto_server` found on `PATH`.
    pub fn locate() -> Result<PathBuf, StackError> {
        if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(StackError::MotoNotFound(format!("MOTO_SERVER={} is not a file", path.display())))
            };
        }
        let mut tried = Vec::new();
        if let Ok(root) = repo_root() {
            let venv = root.join(".venv/bin/moto_server");
            if venv.is_file() {
                return Ok(venv);
            }
            tried.push(venv.display().to_string());
        }
        let on_path = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|d| d.join("moto_server")).collect::<Vec<_>>())
            .unwrap_or_default();
        if let Some(found) = on_path.into_iter().find(|p| p.is_file()) {
            return Ok(found);
        }
        tried.push("moto_server on PATH".to_owned());
        Err(StackError::MotoNotFound(format!(
            "set MOTO_SERVER or run `make setup` (tried {})",
            tried.join(", ")
        )))
    }

    /// Starts `moto_server` on a free 127.0.0.1 port and returns once it answers requests.
    pub async fn start(moto_server: impl AsRef<Path>) -> Result<Self, StackError> {
        let path = moto_server.as_ref().to_path_buf();
        let port = free_port().map_err(|source| StackError::Spawn { path: path.clone(), source })?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES)));
        let exited = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let (spawned_tx, spawned) = tokio::sync::oneshot::channel();

        // The child is spawned and reaped on a thread that lives exactly as long as this `Moto`:
        // PR_SET_PDEATHSIG fires when the spawning *thread* exits, so it must not be a test or
        // runtime thread that may end while the server is still in use.
        let keeper = {
            let (child_path, log, exited) = (path.clone(), log.clone(), exited.clone());
            std::thread::Builder::new()
                .name(format!("moto-{port}"))
                .spawn(move || keep(child_path, port, log, exited, stopped, spawned_tx))
                .map_err(|source| StackError::Spawn { path: path.clone(), source })?
        };
        let pid = match spawned.await {
            Ok(Ok(pid)) => pid,
            Ok(Err(source)) => {
                let _ = keeper.join();
                return Err(StackError::Spawn { path, source });
            }
            Err(_) => {
                let _ = keeper.join();
                return Err(StackError::Spawn { path, source: io::Error::other("spawning thread ended") });
            }
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(StackError::Moto)?;
        let moto = Self { endpoint, pid, stop: Some(stop), keeper: Some(keeper), http };
        moto.wait_ready(&log, &exited).await?;
        Ok(moto)
    }

    /// `http://127.0.0.1:<port>`, for `endpoint_url`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Forgets every resource moto holds (`POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<(), StackError> {
        self.http
            .post(format!("{}/moto-api/reset", self.endpoint))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(StackError::Moto)?;
        Ok(())
    }

    async fn wait_ready(&self, log: &Mutex<VecDeque<String>>, exited: &AtomicBool) -> Result<(), StackError> {
        let started = Instant::now();
        let probe = format!("{}/moto-api/", self.endpoint);
        loop {
            let answered = self.http.get(&probe).timeout(Duration::from_secs(2)).send().await;
            if answered.is_ok_and(|resp| resp.status().is_success()) {
                return Ok(());
            }
            if exited.load(Ordering::SeqCst) || started.elapsed() > READY_WITHIN {
                let log =
                    log.lock().map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default();
                return Err(StackError::NotReady {
                    endpoint: self.endpoint.clone(),
                    exited: exited.load(Ordering::SeqCst),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// Owns the child: spawns it, reports its pid, then kills and reaps it once `stopped` closes.
/// moto's server, single-threaded. `moto_server` serves requests on several threads and then
/// does not serialize conditional writes to one item (two racing `claim_slot`s both win), which
/// DynamoDB does; one thread gives DynamoDB's answer. Started with the virtualenv's python that
/// sits beside `moto_server`.
///
/// One change to moto's DynamoDB, for speed only: a `Query` starts from `Table.all_items()`,
/// which lists and sorts every item of the table, and then keeps those of the partition (or, on
/// an index, those with the index's key). With 20,000 records that is seconds per query, and the
/// dispatcher's tick, each job's start and finish and every API listing query, so a local sync
/// slowed down as its table grew (py-spy: 83% of moto's time in `Query` at 13,000 records).
/// During a `Query` the table's `all_items` answers the partition's items (on an index: the items
/// that have the index's partition key attributes); moto then filters and sorts them as before,
/// so every answer is the same. Skipped if this moto's `Table.query` is not the one it was
/// written for.
const SINGLE_THREADED: &str = "
import inspect, sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
try:
    from moto.dynamodb.models.table import Table
    _query = Table.query
    _params = list(inspect.signature(_query).parameters)
    if _params[:2] == ['self', 'hash_key'] and 'index_name' in _params and 'all_items' in inspect.getsource(_query):
        _index_pos = _params.index('index_name') - 2
        def _candidates(table, hash_key, index_name):
            if not table.range_key_attr:
                return None
            if not index_name:
                return list(table.items.get(hash_key, {}).values())
            index = next((i for i in table.all_indexes() if i.name == index_name), None)
            if index is None:
                return None
            keys = [k['AttributeName'] for k in index.schema if k['KeyType'] == 'HASH']
            return [i for part in table.items.values() for i in part.values() if all(k in i.attrs for k in keys)]
        def _fast_query(self, hash_key, *args, **kwargs):
            index_name = kwargs.get('index_name', args[_index_pos] if len(args) > _index_pos else None)
            found = _candidates(self, hash_key, index_name)
            if found is None:
                return _query(self, hash_key, *args, **kwargs)
            self.all_items = lambda: found
            try:
                return _query(self, hash_key, *args, **kwargs)
            finally:
                del self.all_items
        Table.query = _fast_query
except Exception as e:
    print('moto query speed-up not applied:', e, file=sys.stderr)
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False,
           request_handler=MotoRequestHandler)
";

#[allow(unsafe_code)]
fn keep(
    path: PathBuf,
    port: u16,
    log: Arc<Mutex<VecDeque<String>>>,
    exited: Arc<AtomicBool>,
    stopped: mpsc::Receiver<()>,
    spawned: tokio::sync::oneshot::Sender<io::Result<u32>>,
) {
    let parent = std::process::id() as libc::pid_t;
    let python = path.with_file_name("python");
    let mut command = Command::new(&python);
    command
        .args(["-c", SINGLE_THREADED, &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid) without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = spawned.send(Err(e));
            return;
        }
    };
    if let Some(stderr) = child.stderr.take() {
        let drain = std::thread::Builder::new().name(format!("moto-{port}-log")).spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = log.lock() {
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
            exited.store(true, Ordering::SeqCst);
        });
        if drain.is_err() {
            let _ = child.kill();
        }
    }
    if spawned.send(Ok(child.id())).is_ok() {
        let _ = stopped.recv();
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
