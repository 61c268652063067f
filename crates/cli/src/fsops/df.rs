//! `barge system df` (with `-v`) and `barge system prune`: the daemon's `/system/df` as
//! docker prints it, and the prune endpoints called in docker's order.
//!
//! **Invariants:** read-only except for `system prune`, which asks for confirmation unless
//! `--force` and prints the reclaimed space as docker does.

use anyhow::Result;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{api_error, filters, query, Client};
use crate::format::{self, human_size, Output};

fn pct(part: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", human_size(part), part * 100 / total)
    } else {
        human_size(part)
    }
}

fn df_header(field: &str) -> String {
    match field {
        "TotalCount" => "TOTAL".into(),
        "Reclaimable" => "RECLAIMABLE".into(),
        other => other.to_uppercase(),
    }
}

/// `barge system df`.
pub async fn df(client: &Client, args: crate::cli::DfArgs) -> Result<i32> {
    let v: Value = client.json(Method::GET, "/system/df", None).await?;
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let (images, containers, volumes, cache) = (
        arr("Images"),
        arr("Containers"),
        arr("Volumes"),
        arr("BuildCache"),
    );
    let layers = v["LayersSize"].as_i64().unwrap_or(0);
    let i64of = |x: &Value, k: &str| x[k].as_i64().unwrap_or(0);
    let used: i64 = images
        .iter()
        .filter(|i| i64of(i, "Containers") > 0)
        .map(|i| i64of(i, "Size") - i64of(i, "SharedSize").max(0))
        .sum();
    let c_size: i64 = containers.iter().map(|c| i64of(c, "SizeRw")).sum();
    let c_reclaim: i64 = containers
        .iter()
        .filter(|c| c["State"] != "running")
        .map(|c| i64of(c, "SizeRw"))
        .sum();
    let vsize = |x: &Value| x["UsageData"]["Size"].as_i64().unwrap_or(0).max(0);
    let v_size: i64 = volumes.iter().map(vsize).sum();
    let v_active = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let v_reclaim: i64 = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(vsize)
        .sum();
    let b_size: i64 = cache
        .iter()
        .filter(|b| !b["Shared"].as_bool().unwrap_or(false))
        .map(|b| i64of(b, "Size"))
        .sum();
    let b_active = cache
        .iter()
        .filter(|b| b["InUse"].as_bool().unwrap_or(false))
        .count();
    let b_reclaim: i64 = cache
        .iter()
        .filter(|b| !b["InUse"].as_bool().unwrap_or(false))
        .map(|b| i64of(b, "Size"))
        .sum();
    if args.verbose && args.format.is_none() {
        return df_verbose(&images, &containers, &volumes, &cache, b_size);
    }
    let rows = vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(),
               "Active": images.iter().filter(|i| i64of(i, "Containers") > 0).count().to_string(),
               "Size": human_size(layers), "Reclaimable": pct(layers - used, layers)}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(),
               "Active": containers.iter().filter(|c| c["State"] == "running").count().to_string(),
               "Size": human_size(c_size), "Reclaimable": pct(c_reclaim, c_size)}),
        json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(),
               "Active": v_active.to_string(), "Size": human_size(v_size),
               "Reclaimable": pct(v_reclaim, v_size)}),
        json!({"Type": "Build Cache", "TotalCount": cache.len().to_string(),
               "Active": b_active.to_string(), "Size": human_size(b_size),
               "Reclaimable": human_size(b_reclaim)}),
    ];
    let output = Output::from_flag(
        args.format.as_deref(),
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    )?;
    print!("{}", output.render(&rows, df_header)?);
    Ok(0)
}

fn df_verbose(
    images: &[Value],
    containers: &[Value],
    volumes: &[Value],
    cache: &[Value],
    cache_size: i64,
) -> Result<i32> {
    let i64of = |x: &Value, k: &str| x[k].as_i64().unwrap_or(0);
    let mut t = String::from(
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS\n",
    );
    let now = chrono::Utc::now().timestamp();
    let ago = |secs: i64| {
        format!(
            "{} ago",
            format::human_duration(std::time::Duration::from_secs((now - secs).max(0) as u64))
        )
    };
    for i in images {
        let tags: Vec<String> = i["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let tags = if tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            tags
        };
        for tag in tags {
            let (repo, tag) = tag.rsplit_once(':').unwrap_or((&tag, "<none>"));
            let size = i64of(i, "Size");
            let shared = i64of(i, "SharedSize").max(0);
            t.push_str(&format!(
                "{repo}\t{tag}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                format::short_id(i["Id"].as_str().unwrap_or_default()),
                ago(i64of(i, "Created")),
                human_size(size),
                human_size(shared),
                human_size(size - shared),
                i64of(i, "Containers")
            ));
        }
    }
    println!("Images space usage:\n");
    print!("{}", format::tabwrite(&t));
    let mut t =
        String::from("CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES\n");
    for c in containers {
        let cmd = c["Command"].as_str().unwrap_or_default();
        let cmd: String = if cmd.chars().count() > 20 {
            format!("{}…", cmd.chars().take(19).collect::<String>())
        } else {
            cmd.to_string()
        };
        t.push_str(&format!(
            "{}\t{}\t\"{cmd}\"\t{}\t{}\t{}\t{}\t{}\n",
            format::short_id(c["Id"].as_str().unwrap_or_default()),
            c["Image"].as_str().unwrap_or_default(),
            c["Mounts"].as_array().map(Vec::len).unwrap_or(0),
            human_size(i64of(c, "SizeRw")),
            ago(i64of(c, "Created")),
            c["Status"].as_str().unwrap_or_default(),
            c["Names"][0]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/'),
        ));
    }
    println!("\nContainers space usage:\n");
    print!("{}", format::tabwrite(&t));
    let mut t = String::from("VOLUME NAME\tLINKS\tSIZE\n");
    for v in volumes {
        t.push_str(&format!(
            "{}\t{}\t{}\n",
            v["Name"].as_str().unwrap_or_default(),
            v["UsageData"]["RefCount"].as_i64().unwrap_or(0),
            human_size(v["UsageData"]["Size"].as_i64().unwrap_or(0).max(0))
        ));
    }
    println!("\nLocal Volumes space usage:\n");
    print!("{}", format::tabwrite(&t));
    println!("\nBuild cache usage: {}\n", human_size(cache_size));
    let mut t = String::from("CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED\n");
    for b in cache {
        t.push_str(&format!(
            "{}\t{}\t{}\t\t\t{}\t{}\n",
            b["ID"].as_str().unwrap_or_default(),
            b["Type"].as_str().unwrap_or_default(),
            human_size(i64of(b, "Size")),
            i64of(b, "UsageCount"),
            b["Shared"].as_bool().unwrap_or(false)
        ));
    }
    print!("{}", format::tabwrite(&t));
    Ok(0)
}

/// `barge system prune`.
pub async fn system_prune(client: &Client, args: crate::cli::SystemPruneArgs) -> Result<i32> {
    if !args.force {
        let mut warn = String::from(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
        );
        if args.volumes {
            warn.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        warn.push_str(if args.all {
            "  - all images without at least one container associated to them\n"
        } else {
            "  - all dangling images\n"
        });
        warn.push_str("  - unused build cache\n\nAre you sure you want to continue?");
        if !crate::confirm(&warn) {
            return Ok(0);
        }
    }
    let f = filters(&args.filter)?;
    let mut total: i64 = 0;
    let post = |path: String| async move {
        let r: Result<Value> = client.json(Method::POST, &path, None).await;
        match r {
            // A daemon without that kind of object (older barge): nothing to prune.
            Err(e) if api_error(&e).is_some_and(|a| a.status == 404) => Ok(Value::Null),
            other => other,
        }
    };
    let c = post(format!(
        "/containers/prune{}",
        query(&[("filters", f.clone())])
    ))
    .await?;
    crate::format::print_deleted("Deleted Containers:", &c["ContainersDeleted"]);
    total += c["SpaceReclaimed"].as_i64().unwrap_or(0);
    let n = post(format!(
        "/networks/prune{}",
        query(&[("filters", f.clone())])
    ))
    .await?;
    crate::format::print_deleted("Deleted Networks:", &n["NetworksDeleted"]);
    if args.volumes {
        let v = post(format!(
            "/volumes/prune{}",
            query(&[("filters", f.clone())])
        ))
        .await?;
        crate::format::print_deleted("Deleted Volumes:", &v["VolumesDeleted"]);
        total += v["SpaceReclaimed"].as_i64().unwrap_or(0);
    }
    let mut img_filters = args.filter.clone();
    if args.all {
        img_filters.push("dangling=false".into());
    }
    let i = post(format!(
        "/images/prune{}",
        query(&[("filters", filters(&img_filters)?)])
    ))
    .await?;
    if let Some(items) = i["ImagesDeleted"].as_array().filter(|a| !a.is_empty()) {
        println!("Deleted Images:");
        for it in items {
            if let Some(u) = it["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = it["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    total += i["SpaceReclaimed"].as_i64().unwrap_or(0);
    let b = post("/build/prune".to_string()).await?;
    crate::format::print_deleted("Deleted build cache objects:", &b["CachesDeleted"]);
    total += b["SpaceReclaimed"].as_i64().unwrap_or(0);
    println!("Total reclaimed space: {}", human_size(total));
    Ok(0)
}
