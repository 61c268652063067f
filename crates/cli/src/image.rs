//! Image commands.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bollard_stubs::models::ImageDeleteResponseItem;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::cli::{
    FormatNamesArgs, HistoryArgs, ImagesArgs, ImportArgs, LoadArgs, PruneArgs, RmiArgs, SaveArgs,
    TagArgs,
};
use crate::client::{self, channel_body, empty, filters, for_each_json, query, seg, Client};
use crate::format::{self, Output};
use crate::status;

/// Splits `name[:tag]` (the tag follows the last `/`). Digests stay in the name.
pub fn split_reference(reference: &str) -> (String, Option<String>) {
    if reference.contains('@') {
        return (reference.to_string(), None);
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (
            reference[..slash + i].to_string(),
            Some(reference[slash + i + 1..].to_string()),
        ),
        None => (reference.to_string(), None),
    }
}

use format::created_at;

/// Docker's `images` rows (one per repository tag) for one image summary.
pub fn image_rows(img: &Value, no_trunc: bool) -> Vec<Value> {
    let id = img["Id"].as_str().unwrap_or_default();
    let id = if no_trunc {
        id.to_string()
    } else {
        format::short_id(id)
    };
    let created = img["Created"].as_i64().unwrap_or(0);
    let size = img["Size"].as_i64().unwrap_or(0);
    let strs = |key: &str| -> Vec<String> {
        img[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let digests = strs("RepoDigests");
    let mut tags: Vec<(String, String)> = strs("RepoTags")
        .iter()
        .filter(|t| t.as_str() != "<none>:<none>")
        .map(|t| {
            let (repo, tag) = split_reference(t);
            (repo, tag.unwrap_or_else(|| "<none>".into()))
        })
        .collect();
    if tags.is_empty() {
        // Untagged: show the repository of a digest if there is one.
        let repo = digests
            .iter()
            .find(|d| !d.starts_with("<none>"))
            .and_then(|d| d.split_once('@'))
            .map_or("<none>".to_string(), |(r, _)| r.to_string());
        tags.push((repo, "<none>".into()));
    }
    tags.into_iter()
        .map(|(repo, tag)| {
            let digest = digests
                .iter()
                .filter_map(|d| d.split_once('@'))
                .find(|(r, _)| *r == repo)
                .map_or("<none>".to_string(), |(_, d)| d.to_string());
            json!({
                "Containers": img["Containers"].as_i64().map_or("N/A".into(), |c| if c < 0 { "N/A".to_string() } else { c.to_string() }),
                "CreatedAt": created_at(created),
                // docker's CLI: an image without a creation time (Created 0) shows N/A.
                "CreatedSince": if created == 0 { "N/A".to_string() } else { format::since_unix(created) },
                "Digest": digest,
                "ID": id,
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": format::human_size(size),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": format::human_size(size),
            })
        })
        .collect()
}

/// `barge images`.
pub async fn images(client: &Client, args: ImagesArgs) -> Result<i32> {
    let mut filter = args.filter.clone();
    if let Some(r) = &args.reference {
        filter.push(format!("reference={r}"));
    }
    let path = format!(
        "/images/json{}",
        query(&[
            ("all", args.all.then(|| "1".to_string())),
            ("digests", args.digests.then(|| "1".to_string())),
            ("filters", filters(&filter)?),
        ])
    );
    let list: Vec<Value> = client.json(Method::GET, &path, None).await?;
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for img in &list {
            let id = img["Id"].as_str().unwrap_or_default();
            let id = if args.no_trunc {
                id.to_string()
            } else {
                format::short_id(id)
            };
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let default = if args.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let output = Output::from_flag(args.format.as_deref(), default)?;
    let rows: Vec<Value> = list
        .iter()
        .flat_map(|i| image_rows(i, args.no_trunc))
        .collect();
    print!("{}", output.render(&rows, format::image_header_name)?);
    Ok(0)
}

/// `barge image inspect`.
pub async fn inspect(client: &Client, args: FormatNamesArgs) -> Result<i32> {
    crate::system::inspect_objects(client, &args.names, args.format.as_deref(), Some("image")).await
}

/// `barge history`.
pub async fn history(client: &Client, args: HistoryArgs) -> Result<i32> {
    let items: Vec<Value> = client
        .json(
            Method::GET,
            &format!("/images/{}/history", seg(&args.image)),
            None,
        )
        .await?;
    let rows: Vec<Value> = items
        .iter()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("<missing>");
            let id = if id == "<missing>" || id.is_empty() {
                "<missing>".to_string()
            } else if args.no_trunc {
                id.to_string()
            } else {
                format::short_id(id)
            };
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or_default().to_string();
            let by = if args.no_trunc {
                by
            } else {
                format::ellipsis(&by, 45)
            };
            let size = h["Size"].as_i64().unwrap_or(0);
            json!({
                "ID": id,
                "CreatedSince": if args.human { format::since_unix(created) } else { created_at(created) },
                "CreatedAt": created_at(created),
                "CreatedBy": by,
                "Size": if args.human { format::human_size(size) } else { size.to_string() },
                "Comment": h["Comment"].as_str().unwrap_or_default(),
            })
        })
        .collect();
    if args.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let output = Output::from_flag(
        args.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    )?;
    print!(
        "{}",
        output.render(&rows, |f| match f {
            "ID" => "IMAGE".into(),
            other => format::header_name(other),
        })?
    );
    Ok(0)
}

/// `barge tag`.
pub async fn tag(client: &Client, args: TagArgs) -> Result<i32> {
    let (repo, tag) = split_reference(&args.target);
    let path = format!(
        "/images/{}/tag{}",
        seg(&args.source),
        query(&[("repo", Some(repo)), ("tag", tag)])
    );
    client.send(Method::POST, &path, None).await?;
    Ok(0)
}

/// `barge rmi`.
pub async fn rmi(client: &Client, args: RmiArgs) -> Result<i32> {
    let q = query(&[
        ("force", args.force.then(|| "1".to_string())),
        ("noprune", args.no_prune.then(|| "1".to_string())),
    ]);
    let mut failed = false;
    for name in &args.images {
        let result: Result<Vec<ImageDeleteResponseItem>> = client
            .json(Method::DELETE, &format!("/images/{}{q}", seg(name)), None)
            .await;
        match result {
            Ok(items) => {
                for item in items {
                    if let Some(u) = item.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item.deleted {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                if e.downcast_ref::<client::Unreachable>().is_some() {
                    return Err(e);
                }
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

/// `barge image prune`.
pub async fn prune(client: &Client, args: PruneArgs) -> Result<i32> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !crate::confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(0);
    }
    let mut filter = args.filter.clone();
    filter.push(format!("dangling={}", !args.all));
    let path = format!("/images/prune{}", query(&[("filters", filters(&filter)?)]));
    let report: Value = client.json(Method::POST, &path, None).await?;
    let deleted = report["ImagesDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for item in deleted {
            if let Some(u) = item["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = item["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(report["SpaceReclaimed"].as_i64().unwrap_or(0))
    );
    Ok(0)
}

/// Upload progress on stderr when it is a terminal (big files only).
struct Progress {
    total: Option<u64>,
    sent: u64,
    last: std::time::Instant,
    shown: bool,
    enabled: bool,
}

impl Progress {
    const MIN_SIZE: u64 = 8 << 20;

    fn new(total: Option<u64>) -> Self {
        Self {
            total,
            sent: 0,
            last: std::time::Instant::now(),
            shown: false,
            enabled: std::io::stderr().is_terminal() && total.is_none_or(|t| t >= Self::MIN_SIZE),
        }
    }

    fn add(&mut self, n: usize) {
        self.sent += n as u64;
        if !self.enabled || self.last.elapsed() < std::time::Duration::from_millis(200) {
            return;
        }
        self.last = std::time::Instant::now();
        self.shown = true;
        eprint!("\r{}", progress_line(self.sent, self.total));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            eprintln!("\r{}", progress_line(self.sent, self.total));
        }
    }
}

/// `Sending [=====>     ]  12.3MB/45.6MB` (or just the byte count).
pub fn progress_line(sent: u64, total: Option<u64>) -> String {
    const WIDTH: u64 = 40;
    let sent_h = format::human_size(sent as i64);
    match total.filter(|t| *t > 0) {
        Some(total) => {
            let done = (sent.min(total) * WIDTH / total) as usize;
            let bar = if done as u64 >= WIDTH {
                "=".repeat(WIDTH as usize)
            } else {
                format!(
                    "{}>{}",
                    "=".repeat(done),
                    " ".repeat(WIDTH as usize - done - 1)
                )
            };
            format!(
                "Sending [{bar}] {sent_h:>8}/{}",
                format::human_size(total as i64)
            )
        }
        None => format!("Sending {sent_h:>8}"),
    }
}

/// A `Write` that forwards chunks into a request body channel.
struct ChannelWriter(mpsc::Sender<std::io::Result<Bytes>>, Progress);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "request aborted"))?;
        self.1.add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `dir`'s contents to `builder` with paths relative to `root`, sorted.
fn append_tree<W: Write>(builder: &mut tar::Builder<W>, root: &Path, dir: &Path) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root)?;
        if path.is_dir() {
            builder.append_dir(rel, &path)?;
            append_tree(builder, root, &path)?;
        } else {
            builder
                .append_path_with_name(&path, rel)
                .with_context(|| format!("adding {}", path.display()))?;
        }
    }
    Ok(())
}

/// Streams a file, a directory (tarred on the fly) or stdin (`None`) as a body.
fn source_body(path: Option<&Path>) -> Result<client::Body> {
    let (tx, body) = channel_body();
    match path {
        Some(p) if p.is_dir() => {
            let root = p.to_path_buf();
            tokio::task::spawn_blocking(move || {
                let err_tx = tx.clone();
                let mut builder = tar::Builder::new(ChannelWriter(tx, Progress::new(None)));
                builder.mode(tar::HeaderMode::Deterministic);
                let result = append_tree(&mut builder, &root, &root)
                    .and_then(|()| builder.finish().map_err(Into::into));
                if let Err(e) = result {
                    let _ = err_tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
                }
            });
        }
        _ => {
            let (mut reader, total): (Box<dyn Read + Send>, Option<u64>) = match path {
                Some(p) => {
                    let f =
                        std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
                    let len = f.metadata().ok().map(|m| m.len());
                    (Box::new(f), len)
                }
                None => (Box::new(std::io::stdin()), None),
            };
            tokio::task::spawn_blocking(move || {
                let mut progress = Progress::new(total);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx
                                .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                                .is_err()
                            {
                                break;
                            }
                            progress.add(n);
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            break;
                        }
                    }
                }
            });
        }
    }
    Ok(body)
}

/// Prints a docker JSON message stream like docker's `jsonmessage`: `stream`
/// text as is, `status` lines, and progress updates rewritten in place on a
/// terminal. `errorDetail`/`error` become errors.
#[derive(Default)]
struct MessagePrinter {
    /// A progress line is on screen without its newline.
    progress_open: bool,
}

impl MessagePrinter {
    fn print(&mut self, v: &Value) -> Result<()> {
        let mut out = std::io::stdout().lock();
        if let Some(err) = v["errorDetail"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
        {
            if self.progress_open {
                writeln!(out)?;
                self.progress_open = false;
            }
            bail!("{err}");
        }
        let text = if let Some(s) = v["stream"].as_str() {
            Some(s.to_string())
        } else if let Some(s) = v["status"].as_str() {
            let progress = v["progress"].as_str().unwrap_or("");
            Some(match v["id"].as_str() {
                Some(id) => format!("{id}: {s} {progress}").trim_end().to_string() + "\n",
                None => format!("{s}\n"),
            })
        } else {
            None
        };
        let Some(text) = text else {
            return Ok(());
        };
        let is_progress = v["progressDetail"]
            .as_object()
            .is_some_and(|d| !d.is_empty());
        if is_progress && out.is_terminal() {
            write!(out, "\r\x1b[2K{}", text.trim_end())?;
            self.progress_open = true;
        } else {
            if self.progress_open {
                writeln!(out)?;
                self.progress_open = false;
            }
            write!(out, "{text}")?;
        }
        out.flush()?;
        Ok(())
    }

    fn finish(&mut self) {
        if self.progress_open {
            println!();
            self.progress_open = false;
        }
    }
}

/// Prints a whole JSON message stream.
async fn print_messages(resp: hyper::Response<hyper::body::Incoming>) -> Result<()> {
    let mut printer = MessagePrinter::default();
    let result = for_each_json(resp, |v| printer.print(&v)).await;
    printer.finish();
    result
}

/// `barge load`.
pub async fn load(client: &Client, args: LoadArgs) -> Result<i32> {
    let path = args.input.as_deref().map(Path::new);
    if path.is_none() && std::io::stdin().is_terminal() {
        return Err(status(
            1,
            "requested load from stdin, but stdin is empty (use -i FILE or redirect)",
        ));
    }
    if let Some(p) = path {
        if !p.exists() {
            return Err(status(
                1,
                format!("open {}: no such file or directory", p.display()),
            ));
        }
    }
    let quiet = args.quiet || !std::io::stdout().is_terminal();
    let body = source_body(path)?;
    let q = query(&[
        ("quiet", Some(if quiet { "1" } else { "0" }.to_string())),
        ("platform", args.platform.clone()),
    ]);
    let resp = client
        .request(
            Method::POST,
            &format!("/images/load{q}"),
            body,
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    if is_json {
        print_messages(resp).await?;
    } else {
        let bytes = client::read_all(resp).await?;
        std::io::stdout().write_all(&bytes)?;
    }
    Ok(0)
}

/// `barge save`.
pub async fn save(client: &Client, args: SaveArgs) -> Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(status(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let mut params: Vec<(&str, Option<String>)> = args
        .images
        .iter()
        .map(|i| ("names", Some(i.clone())))
        .collect();
    params.push(("format", args.format.clone().filter(|f| f != "docker")));
    params.push(("platform", args.platform.clone()));
    let resp = client
        .request(
            Method::GET,
            &format!("/images/get{}", query(&params)),
            empty(),
            &[],
        )
        .await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("failed to save image: create {p}"))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.write_all(&data)?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// `barge import`.
pub async fn import(client: &Client, args: ImportArgs) -> Result<i32> {
    let (repo, tag) = match &args.reference {
        Some(r) => {
            let (repo, tag) = split_reference(r);
            (Some(repo), tag)
        }
        None => (None, None),
    };
    let is_url = args.source.starts_with("http://") || args.source.starts_with("https://");
    let from_src = if is_url {
        args.source.clone()
    } else {
        "-".to_string()
    };
    let mut params = vec![
        ("fromSrc", Some(from_src)),
        ("repo", repo),
        ("tag", tag),
        ("message", args.message.clone()),
        ("platform", args.platform.clone()),
    ];
    params.extend(args.change.iter().map(|c| ("changes", Some(c.clone()))));
    let body = if is_url {
        empty()
    } else if args.source == "-" {
        source_body(None)?
    } else {
        let p = Path::new(&args.source);
        if !p.exists() {
            return Err(status(
                1,
                format!("open {}: no such file or directory", args.source),
            ));
        }
        source_body(Some(p))?
    };
    let resp = client
        .request(
            Method::POST,
            &format!("/images/create{}", query(&params)),
            body,
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    print_messages(resp).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(5_000_000, Some(10_000_000)),
            format!(
                "Sending [{}>{}]      5MB/10MB",
                "=".repeat(20),
                " ".repeat(19)
            )
        );
        assert_eq!(
            progress_line(10_000_000, Some(10_000_000)),
            format!("Sending [{}]     10MB/10MB", "=".repeat(40))
        );
        assert_eq!(progress_line(1_500, None), "Sending    1.5kB");
    }

    #[test]
    fn references_split() {
        assert_eq!(split_reference("busybox"), ("busybox".into(), None));
        assert_eq!(
            split_reference("busybox:1.35"),
            ("busybox".into(), Some("1.35".into()))
        );
        assert_eq!(
            split_reference("localhost:5000/x/y:2"),
            ("localhost:5000/x/y".into(), Some("2".into()))
        );
        assert_eq!(
            split_reference("localhost:5000/x"),
            ("localhost:5000/x".into(), None)
        );
    }

    #[test]
    fn image_rows_one_per_tag() {
        let img = json!({
            "Id": "sha256:abcdef0123456789abcdef",
            "RepoTags": ["localhost/busybox:1.35", "bb:latest"],
            "RepoDigests": ["localhost/busybox@sha256:feed"],
            "Created": chrono::Utc::now().timestamp() - 90,
            "Size": 4_261_000,
        });
        let rows = image_rows(&img, false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Repository"], "localhost/busybox");
        assert_eq!(rows[0]["Tag"], "1.35");
        assert_eq!(rows[0]["Digest"], "sha256:feed");
        assert_eq!(rows[0]["ID"], "abcdef012345");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[0]["CreatedSince"], "About a minute ago");
        assert_eq!(rows[1]["Digest"], "<none>");
        let dangling = image_rows(&json!({"Id": "sha256:1", "RepoTags": null}), true);
        assert_eq!(dangling[0]["Repository"], "<none>");
        assert_eq!(dangling[0]["Tag"], "<none>");
    }

    #[test]
    fn directory_is_tarred_with_relative_paths() {
        let dir = std::env::temp_dir().join(format!("barge-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), b"{}").unwrap();
        std::fs::write(dir.join("blobs/sha256/aa"), b"data").unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        append_tree(&mut builder, &dir, &dir).unwrap();
        let data = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(data.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            names,
            vec!["blobs", "blobs/sha256", "blobs/sha256/aa", "oci-layout"]
        );
    }
}
