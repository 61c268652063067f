//! OCI platforms (`os/arch[/variant]`), per the
//! [image index spec](https://github.com/opencontainers/image-spec/blob/main/image-index.md).

use std::fmt;

use crate::ImageError;

/// A platform: `os` and `architecture` use Go's `GOOS`/`GOARCH` names (`linux`, `amd64`,
/// `arm64`, `arm`), `variant` e.g. `v7`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture (GOARCH), e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for `arm`.
    pub variant: Option<String>,
}

/// Maps Rust/uname architecture names to GOARCH (`x86_64` → `amd64`, `aarch64` → `arm64`).
fn normalize_arch(arch: &str) -> String {
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" | "amd64" => "amd64".into(),
        "aarch64" | "arm64" => "arm64".into(),
        "x86" | "i386" | "i686" | "386" => "386".into(),
        "armhf" | "armel" | "arm" => "arm".into(),
        "powerpc64" | "ppc64le" => "ppc64le".into(),
        other => other.to_string(),
    }
}

impl Platform {
    /// Parses `os/arch[/variant]` or a bare `arch` (os `linux`), e.g. `linux/arm64`,
    /// `linux/arm/v7`, `arm64`. Errors: [`ImageError::InvalidPlatform`].
    pub fn parse(s: &str) -> Result<Platform, ImageError> {
        let err = |reason: &str| ImageError::InvalidPlatform {
            platform: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| {
            p.is_empty()
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        }) {
            return Err(err("expected os/arch[/variant]"));
        }
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(v.to_string())),
            _ => return Err(err("expected os/arch[/variant]")),
        };
        let os = os.to_ascii_lowercase();
        if matches!(os.as_str(), "amd64" | "arm64" | "arm" | "386") {
            return Err(err("expected os/arch[/variant], e.g. linux/arm64"));
        }
        Ok(Platform {
            os,
            architecture: normalize_arch(arch),
            variant,
        }
        .normalized())
    }

    /// Builds a platform from its parts (normalising the architecture name).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_ascii_lowercase(),
            architecture: normalize_arch(architecture),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
        .normalized()
    }

    fn normalized(mut self) -> Platform {
        // arm64 is v8 unless said otherwise; drop the redundant variant.
        if self.architecture == "arm64" && self.variant.as_deref() == Some("v8") {
            self.variant = None;
        }
        self
    }

    /// The platform of this machine, e.g. `linux/amd64`.
    pub fn host() -> Platform {
        let variant = if std::env::consts::ARCH == "arm" {
            Some("v7")
        } else {
            None
        };
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, variant)
    }

    /// Whether an image for `other` runs on `self` (a wanted platform): same os and
    /// architecture; a variant is compared only when both sides name one.
    pub fn matches(&self, other: &Platform) -> bool {
        let a = self.clone().normalized();
        let b = other.clone().normalized();
        a.os == b.os
            && normalize_arch(&a.architecture) == normalize_arch(&b.architecture)
            && match (&a.variant, &b.variant) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        for (s, disp) in [
            ("linux/arm64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("arm64", "linux/arm64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64", "linux/amd64"),
        ] {
            assert_eq!(Platform::parse(s).unwrap().to_string(), disp, "{s}");
        }
        for bad in ["", "linux/", "a/b/c/d", "linux//v7", "linux/ar m"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let p = |s| Platform::parse(s).unwrap();
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(p("linux/arm").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(!p("windows/amd64").matches(&p("linux/amd64")));
        assert!(p("linux/arm64").matches(&Platform::new("linux", "aarch64", Some("v8"))));
        assert_eq!(Platform::host().os, "linux");
    }
}
