//! Property tests for image references (distribution's grammar,
//! <https://github.com/distribution/reference/blob/main/reference.go>): any input parses or
//! fails cleanly, and every valid reference survives a round trip through its full and familiar
//! spellings. Case counts are bounded so CI stays fast.

use barge_image::reference::Reference;
use proptest::prelude::*;

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn component() -> impl Strategy<Value = String> {
    let alnum = "[a-z0-9]{1,6}";
    (
        alnum,
        prop::collection::vec((prop_oneof!["\\.", "_", "__", "-{1,3}"], alnum), 0..3),
    )
        .prop_map(|(first, rest)| {
            let mut s = first;
            for (sep, part) in rest {
                s.push_str(&sep);
                s.push_str(&part);
            }
            s
        })
}

fn domain() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("localhost".to_string())),
        Just(Some("localhost:5000".to_string())),
        Just(Some("127.0.0.1:5000".to_string())),
        Just(Some("docker.io".to_string())),
        "[a-z]([a-z0-9-]{0,6}[a-z0-9])?\\.[a-z]{2,4}(:[0-9]{1,5})?".prop_map(Some),
    ]
}

fn reference() -> impl Strategy<Value = String> {
    (
        domain(),
        prop::collection::vec(component(), 1..4),
        prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        prop::option::of("[0-9a-f]{64}"),
    )
        .prop_map(|(d, path, tag, digest)| {
            let mut s = String::new();
            // Without a domain, a first component with a dot is a domain (Docker's
            // splitDockerDomain): name the Hub explicitly then.
            let d = d.or_else(|| path[0].contains('.').then(|| "docker.io".to_string()));
            if let Some(d) = d {
                s.push_str(&d);
                s.push('/');
            }
            s.push_str(&path.join("/"));
            if let Some(t) = tag {
                s.push(':');
                s.push_str(&t);
            }
            if let Some(h) = digest {
                s.push_str("@sha256:");
                s.push_str(&h);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_input_parses_or_errs_without_panicking(s in "\\PC{0,80}") {
        let _ = Reference::parse(&s);
    }

    #[test]
    fn near_misses_never_panic(s in "[a-zA-Z0-9:/@._-]{0,60}") {
        if let Ok(r) = Reference::parse(&s) {
            // Whatever parses prints as something that parses to the same reference.
            prop_assert_eq!(Reference::parse(&r.full()).unwrap(), r.clone());
        }
    }

    #[test]
    fn valid_references_round_trip(s in reference()) {
        let r = Reference::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(Reference::parse(&r.full()).unwrap(), r.clone(), "full of {}", s);
        // Docker's familiar form drops `docker.io/`, so a Hub path whose first component looks
        // like a domain (`docker.io/a.b/c` -> `a.b/c`) is ambiguous there too
        // (distribution's familiarizeName): only the others must round-trip.
        let first = r.path().split('/').next().unwrap_or("");
        let hub_domain_like = r.domain() == "docker.io"
            && (first.contains(['.', ':']) || first == "localhost");
        if !hub_domain_like {
            prop_assert_eq!(Reference::parse(&r.familiar()).unwrap(), r.clone(), "familiar of {}", s);
        }
        // No tag and no digest means `latest`.
        prop_assert!(r.tag().is_some() || r.digest().is_some());
        let t = r.with_tag("v2");
        prop_assert_eq!(t.tag(), Some("v2"));
        prop_assert_eq!(t.name(), r.name());
    }

    #[test]
    fn uppercase_repositories_are_refused(s in "[a-z]{1,5}[A-Z][a-z]{0,5}") {
        prop_assert!(Reference::parse(&s).is_err());
    }
}
