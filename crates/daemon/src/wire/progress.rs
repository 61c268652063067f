//! The newline-delimited JSON progress streams of pull, push, load, import and build, and the
//! small bodies of `/auth` and `/distribution`, from `bollard_stubs` models (`CreateImageInfo`,
//! `PushImageInfo`, `BuildInfo`, `ErrorDetail`, `ProgressDetail`, `AuthResponse`,
//! `DistributionInspect`; moby's `api/swagger.yaml`). dockerd's `jsonmessage.JSONMessage`
//! still sends the deprecated top-level `error` beside `errorDetail`, and clients test for it
//! (docker-py raises `BuildError`/`APIError` on `"error" in line`): [`error`] adds it.

use barge_image::digest::Descriptor;
use barge_image::Platform;
use bollard_stubs::models as m;
use serde_json::{json, Value};

use super::to_wire;

/// `{"status": "..."}`: a line of a pull/import without an item.
pub fn status(text: impl Into<String>) -> Value {
    to_wire(
        &m::CreateImageInfo {
            status: Some(text.into()),
            ..Default::default()
        },
        &[],
    )
}

/// `{"status", "progressDetail", "id"}`: one layer's state; `progress` is (bytes done,
/// bytes total), `None` an empty `progressDetail` (`{}`) as dockerd sends for
/// `Waiting`/`Pull complete`.
pub fn item(id: &str, text: &str, progress: Option<(u64, u64)>) -> Value {
    let detail = match progress {
        Some((cur, total)) => m::ProgressDetail {
            current: i64::try_from(cur).ok(),
            total: i64::try_from(total).ok(),
        },
        None => m::ProgressDetail::default(),
    };
    to_wire(
        &m::CreateImageInfo {
            id: Some(id.to_string()),
            status: Some(text.to_string()),
            progress_detail: Some(detail),
            ..Default::default()
        },
        &[],
    )
}

/// `{"errorDetail": {"message"}, "error"}`: the line that ends a failed stream.
pub fn error(msg: &str) -> Value {
    error_with_code(msg, None)
}

/// [`error`] with `errorDetail.code`: a failed `RUN`'s exit code, as dockerd's builder sends.
pub fn error_with_code(msg: &str, code: Option<i64>) -> Value {
    let mut v = to_wire(
        &m::CreateImageInfo {
            error_detail: Some(m::ErrorDetail {
                code,
                message: Some(msg.to_string()),
            }),
            ..Default::default()
        },
        &[],
    );
    v["error"] = json!(msg);
    v
}

/// `{"stream": "..."}`: build output and `load`'s `Loaded image: ...` lines (a `BuildInfo`;
/// bollard's model only deserialises, so the line is written here and the tests read it back
/// into the model).
pub fn stream(text: impl Into<String>) -> Value {
    json!({ "stream": text.into() })
}

/// `{"aux": {"ID": "sha256:..."}}`: the built image's ID (`BuildInfo.aux`, an `ImageID`).
pub fn build_result(id: &str) -> Value {
    json!({ "aux": to_wire(&m::ImageId { id: Some(id.to_string()) }, &[]) })
}

/// `{"progressDetail": {}, "aux": {"Tag", "Digest", "Size"}}`: the last line of a pushed
/// tag (`PushImageInfo` has no `aux`: dockerd's `PushResult`, added here).
pub fn push_result(tag: &str, digest: &str, size: usize) -> Value {
    let mut v = to_wire(
        &m::PushImageInfo {
            progress_detail: Some(m::ProgressDetail::default()),
            ..Default::default()
        },
        &[],
    );
    v["aux"] = json!({ "Tag": tag, "Digest": digest, "Size": size });
    v
}

/// `/auth`'s answer: `{"Status": "Login Succeeded", "IdentityToken": ""}` (dockerd sends the
/// empty token).
pub fn login_succeeded() -> Value {
    let mut v = to_wire(
        &m::AuthResponse {
            status: "Login Succeeded".into(),
            identity_token: None,
        },
        &[],
    );
    v["IdentityToken"] = json!("");
    v
}

/// `GET /distribution/{name}/json`: the registry's descriptor and the platforms of its index.
pub fn distribution(d: &Descriptor, platforms: &[Platform]) -> Value {
    let model = m::DistributionInspect {
        descriptor: m::OciDescriptor {
            media_type: Some(d.media_type.clone()),
            digest: Some(d.digest.clone()),
            size: i64::try_from(d.size).ok(),
            ..Default::default()
        },
        platforms: platforms
            .iter()
            .map(|p| m::OciPlatform {
                architecture: Some(p.architecture.clone()),
                os: Some(p.os.clone()),
                variant: p.variant.clone(),
                ..Default::default()
            })
            .collect(),
    };
    to_wire(&model, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_dockerd_sends_them() {
        assert_eq!(status("Status: x"), json!({"status": "Status: x"}));
        assert_eq!(
            item("abc", "Downloading", Some((5, 10))),
            json!({"id": "abc", "status": "Downloading", "progressDetail": {"current": 5, "total": 10}})
        );
        assert_eq!(
            item("abc", "Pull complete", None),
            json!({"id": "abc", "status": "Pull complete", "progressDetail": {}})
        );
        assert_eq!(
            error("boom"),
            json!({"errorDetail": {"message": "boom"}, "error": "boom"})
        );
        assert_eq!(stream("hi\n"), json!({"stream": "hi\n"}));
        for line in [stream("hi\n"), build_result("sha256:1"), error("x")] {
            serde_json::from_value::<m::BuildInfo>(line.clone())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        let b: m::BuildInfo = serde_json::from_value(build_result("sha256:1")).unwrap();
        assert_eq!(b.aux.and_then(|a| a.id).as_deref(), Some("sha256:1"));
        assert_eq!(build_result("sha256:1"), json!({"aux": {"ID": "sha256:1"}}));
        assert_eq!(
            push_result("1", "sha256:2", 3),
            json!({"progressDetail": {}, "aux": {"Tag": "1", "Digest": "sha256:2", "Size": 3}})
        );
        assert_eq!(
            login_succeeded(),
            json!({"Status": "Login Succeeded", "IdentityToken": ""})
        );
    }
}
