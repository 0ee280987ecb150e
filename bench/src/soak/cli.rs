//! The soak's `partway upload` clients: the real CLI binary on a temp file of random
//! content, sometimes SIGKILLed mid-way and run again with the same command, which resumes
//! the upload from its state file (README "CLI"). The completed object is verified and
//! deleted like the raw clients' ones; the temp file is deleted after.
use std::{
    path::Path,
    process::Stdio,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::client::{self, Api, Outcome, Record, MIB};
use crate::Result;

/// How long one CLI upload may take over all its runs.
const BUDGET: Duration = Duration::from_secs(480);
/// A run to be killed PUTs each part this much later (the CLI's hidden
/// `PARTWAY_CLIENT_PART_DELAY_MS`, a slow link), so that the kill lands mid-transfer:
/// on loopback a whole file takes well under a second otherwise.
const SLOW_PART: Duration = Duration::from_millis(200);

/// Writes `size` bytes of the upload's content to `path` (8 MiB at a time).
async fn write_file(path: &Path, seed: u64, size: u64) -> Result<()> {
    let mut f = tokio::fs::File::create(path).await?;
    let mut at = 0;
    while at < size {
        let end = (at + 8 * MIB).min(size);
        let chunk = tokio::task::spawn_blocking(move || client::content(seed, at, end)).await?;
        f.write_all(&chunk).await?;
        at = end;
    }
    f.flush().await?;
    Ok(())
}

/// One run of `partway upload FILE --json`: Ok(None) when it was killed after
/// `kill_after` before it printed its result, else its last JSON line (or why not).
async fn run_once(
    api: &Api,
    base: &str,
    state: &Path,
    file: &Path,
    kill_after: Option<Duration>,
    run: usize,
) -> Result<Option<Result<serde_json::Value>>> {
    use tokio::io::AsyncReadExt as _;
    let mut cmd = tokio::process::Command::new(crate::bin("partway")?);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARTWAY_") {
            cmd.env_remove(k);
        }
    }
    if kill_after.is_some() {
        cmd.env(
            "PARTWAY_CLIENT_PART_DELAY_MS",
            SLOW_PART.as_millis().to_string(),
        );
    }
    let mut child = cmd
        .env("PARTWAY_SERVER", base)
        .env("PARTWAY_API_KEY", api.key())
        .env("PARTWAY_STATE_DIR", state)
        .arg("upload")
        .arg(file)
        .args(["--part-size", "5MiB", "--parallel", "2", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let out = tokio::spawn(async move {
        let mut b = Vec::new();
        stdout.read_to_end(&mut b).await.map(|_| b)
    });
    let err = tokio::spawn(async move {
        let mut b = Vec::new();
        stderr.read_to_end(&mut b).await.map(|_| b)
    });
    let status = match kill_after {
        Some(after) => match tokio::time::timeout(after, child.wait()).await {
            Ok(status) => Some(status?),
            Err(_) => {
                // SIGKILL, as a crash; reaped so its pipes close.
                child.kill().await?;
                None
            }
        },
        None => Some(child.wait().await?),
    };
    let (out, err) = (out.await??, err.await??);
    // Kept for the diagnosis of a failed invariant: `cli/<file>.<run>.log`.
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let log = api.cli_logs.join(format!("{name}.{run}.log"));
    let ending = match &status {
        Some(s) => format!("\n[soak] exit: {s} via {base}\n"),
        None => format!("\n[soak] SIGKILLed after {kill_after:?} via {base}\n"),
    };
    let _ = std::fs::write(&log, [&err[..], &out[..], ending.as_bytes()].concat());
    let stdout = String::from_utf8_lossy(&out);
    let line = stdout.lines().last().unwrap_or_default();
    let Some(status) = status else {
        // Killed after it had finished (its result printed): a finished run.
        return Ok(serde_json::from_str(line).ok().map(Ok));
    };
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Ok(Some(Err(
            format!("partway upload {status}: {tail:?}").into()
        )));
    }
    Ok(Some(serde_json::from_str(line).map_err(|e| {
        crate::Error::from(format!("partway upload printed {line:?}: {e}"))
    })))
}

/// The `fingerprint` metadata the CLI sends at init (README "CLI"): the first 32 hex
/// digits of the sha256 of `path|size|mtime` (mtime as `secs.nanos`), by which its
/// uploads of one file are listed.
pub fn fingerprint(canonical: &Path, size: u64, mtime: Duration) -> String {
    let key = format!(
        "{}|{size}|{}.{:09}",
        canonical.display(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    );
    hex::encode(Sha256::digest(key.as_bytes()))[..32].to_string()
}

fn fingerprint_of(file: &Path) -> Result<String> {
    let meta = std::fs::metadata(file)?;
    let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH)?;
    Ok(fingerprint(
        &std::fs::canonicalize(file)?,
        meta.len(),
        mtime,
    ))
}

/// One upload by the CLI: runs it (the first run killed at `kill_at`, a fraction of its
/// transfer, when set) until it completes, then verifies and deletes the object.
pub async fn upload(
    api: &Api,
    dir: &Path,
    size: u64,
    seed: u64,
    kill_at: Option<f64>,
) -> Result<()> {
    // The slowed run's transfer: 2 parts at a time, each SLOW_PART late; plus its start.
    let parts = size.div_ceil(client::PART) as f64;
    let kill_after =
        kill_at.map(|f| Duration::from_millis(300) + SLOW_PART.mul_f64(f * (parts / 2.0).max(1.0)));
    let file = dir.join(format!("cli-{seed:016x}.bin"));
    let state = dir.join("state");
    write_file(&file, seed, size).await?;
    let fp = fingerprint_of(&file);
    let result = drive(api, &state, &file, size, seed, kill_after).await;
    let _ = tokio::fs::remove_file(&file).await;
    // A run killed between complete and its result, or an init the CLI sent again after
    // a 5xx (it sends no Idempotency-Key), leaves an upload of this file that the CLI does
    // not finish: every upload of the file is accounted for, found by fingerprint as the
    // CLI finds them.
    let finished = result.as_ref().ok().cloned().flatten();
    others(api, &fp?, size, seed, finished.as_deref()).await?;
    result.map(|_| ())
}

/// Records the uploads of this file other than `finished`: a completed one is verified
/// and deleted like any other, an unfinished one is recorded as abandoned.
async fn others(api: &Api, fp: &str, size: u64, seed: u64, finished: Option<&str>) -> Result<()> {
    let (s, doc) = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/uploads?metadata=fingerprint:{fp}&limit=100"),
            None,
            None,
        )
        .await?;
    if s != 200 {
        return Err(format!("listing uploads by fingerprint: {s} {doc}").into());
    }
    for u in doc["uploads"].as_array().into_iter().flatten() {
        let token = u["resumeToken"].as_str().unwrap_or_default().to_string();
        if Some(token.as_str()) == finished {
            continue;
        }
        let key = u["fileKey"].as_str().unwrap_or_default().to_string();
        let completed = u["status"] == "completed";
        let index = api.stats.push(Record {
            outcome: Outcome::GaveUp("an upload of the file the CLI did not continue".into()),
            ..Record::in_flight(token, String::new(), key.clone(), size, true)
        })?;
        if !completed {
            let orphan = format!(
                "{} of {} left {}",
                u["resumeToken"], u["filename"], u["status"]
            );
            eprintln!("[soak] cli: upload {orphan} (the CLI finished another)");
            if let Ok(mut orphans) = api.stats.cli_orphans.lock() {
                orphans.push(orphan);
            }
        } else {
            api.stats
                .cli_extra_completed
                .fetch_add(1, Ordering::Relaxed);
            client::completed(api, index, &key, seed, size).await?;
        }
    }
    Ok(())
}

async fn drive(
    api: &Api,
    state: &Path,
    file: &Path,
    size: u64,
    seed: u64,
    mut kill_after: Option<Duration>,
) -> Result<Option<String>> {
    let deadline = Instant::now() + BUDGET;
    let mut run = 0usize;
    let last_error = loop {
        // Alternate between the APIs, as a user retrying against a load balancer.
        let base = api.base(run);
        run += 1;
        match run_once(api, base, state, file, kill_after.take(), run).await? {
            None => {
                api.stats.cli_kills.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(doc)) if doc["status"] == "completed" => {
                let token = doc["resumeToken"].as_str().unwrap_or_default().to_string();
                let key = doc["fileKey"].as_str().unwrap_or_default().to_string();
                let index = api.stats.push(Record::in_flight(
                    token.clone(),
                    String::new(),
                    key.clone(),
                    size,
                    true,
                ))?;
                client::completed(api, index, &key, seed, size).await?;
                return Ok(Some(token));
            }
            Some(Ok(doc)) => break format!("partway upload ended {doc}"),
            Some(Err(e)) => {
                if Instant::now() > deadline {
                    break e.to_string();
                }
                api.stats.cli_reruns.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if Instant::now() > deadline {
            break "retry budget spent".to_string();
        }
    };
    Err(format!("cli: {last_error}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_the_clis() {
        // sha256("/tmp/a.bin|5|1700000000.000000042"), first 32 hex digits.
        let fp = fingerprint(Path::new("/tmp/a.bin"), 5, Duration::new(1_700_000_000, 42));
        let want = hex::encode(Sha256::digest(b"/tmp/a.bin|5|1700000000.000000042"));
        assert_eq!(fp, want[..32]);
    }
}
