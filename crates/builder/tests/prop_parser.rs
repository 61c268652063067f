//! Property tests for the Dockerfile parser: any text parses or fails with a
//! `file:line: INSTRUCTION: message` error (never a panic), and blank lines and comments between
//! instructions change nothing but line numbers, as BuildKit's parser
//! (<https://github.com/moby/buildkit/blob/master/frontend/dockerfile/parser/parser.go>) treats them.

use barge_builder::parser::parse;
use proptest::prelude::*;

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "MAINTAINER",
];

/// Lines made of keywords and the characters the parser treats specially.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(KEYWORDS).prop_map(|k| format!("{k} ")),
        Just("\\\n".to_string()),
        Just("\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("# syntax=x\n".to_string()),
        Just("<<EOF\n".to_string()),
        Just("<<-\"EOF\"\n".to_string()),
        Just("EOF\n".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("--from=x ".to_string()),
        Just("${A:-b}".to_string()),
        Just("$".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// A valid Dockerfile as instruction lines.
fn instructions() -> impl Strategy<Value = Vec<String>> {
    let word = "[a-z0-9_./]{1,8}";
    let line = prop_oneof![
        (word, word).prop_map(|(a, b)| format!("RUN echo {a} {b}")),
        (word, word).prop_map(|(a, b)| format!("ENV {}={b}", a.replace(['.', '/'], "_"))),
        (word, word).prop_map(|(a, b)| format!("COPY {a} /{b}")),
        word.prop_map(|a| format!("WORKDIR /{a}")),
        word.prop_map(|a| format!("LABEL k=\"{a}\"")),
        (word, word).prop_map(|(a, b)| format!("CMD [\"{a}\", \"{b}\"]")),
        word.prop_map(|a| format!("RUN echo {a} \\\n    && true")),
    ];
    (word, prop::collection::vec(line, 1..12)).prop_map(|(base, rest)| {
        std::iter::once(format!("FROM {base}"))
            .chain(rest)
            .collect()
    })
}

/// Blank lines, indented blank lines and comment lines.
fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof!["", "   ", "\t", "# [ -~]{0,20}", "  # [ -~]{0,10}"],
        0..3,
    )
    .prop_map(|v| v.into_iter().map(|l| l + "\n").collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_text_parses_or_errs_with_a_line(text in hostile_text()) {
        match parse("Dockerfile", &text) {
            Ok(df) => {
                let lines = text.lines().count().max(1);
                for i in &df.instructions {
                    prop_assert!(i.line >= 1 && i.line <= lines, "line {} of {}", i.line, lines);
                }
            }
            Err(e) => prop_assert!(e.line <= text.lines().count() + 1, "{e}"),
        }
    }

    #[test]
    fn blank_lines_and_comments_between_instructions_change_nothing(
        lines in instructions(),
        fill in prop::collection::vec(filler(), 12),
    ) {
        let plain = lines.join("\n") + "\n";
        // Comments only after the first line (a leading `# x=y` could be a parser directive).
        let mut spaced = String::new();
        for (i, l) in lines.iter().enumerate() {
            // A comment line inside a continuation is dropped too.
            spaced.push_str(&l.replace("\\\n", &format!("\\\n  # inside {i}\n")));
            spaced.push('\n');
            spaced.push_str(&fill[i % fill.len()]);
        }
        let a = parse("Dockerfile", &plain).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = parse("Dockerfile", &spaced).map_err(|e| TestCaseError::fail(format!("{e}\n{spaced}")))?;
        let strip = |d: &barge_builder::parser::Dockerfile| {
            d.instructions
                .iter()
                .map(|i| (i.keyword.clone(), i.flags.clone(), i.rest.clone(), i.json.clone()))
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(strip(&a), strip(&b), "{}", spaced);
    }
}
