//! Container names: Docker's name rule ([`valid_name`]), generated `adjective_surname`
//! names for a create without `--name`, and [`Containers::rename`].
//!
//! **Invariants:** names are stored without the leading `/` and are unique among the
//! engine's containers, checked under the engine lock (in `create` and `rename`); a generated
//! name is never `boring_wozniak` (as in moby), and a retry after a clash adds a digit.

use super::Containers;
use crate::*;

/// Docker's container name rule.
pub(super) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];
const SURNAMES: &[&str] = &[
    "albattani",
    "allen",
    "almeida",
    "archimedes",
    "ardinghelli",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bell",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "chatelet",
    "clarke",
    "cohen",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dirac",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gates",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hermann",
    "hopper",
    "hypatia",
    "jackson",
    "jennings",
    "jepsen",
    "johnson",
    "kalam",
    "kapitsa",
    "keller",
    "kepler",
    "khorana",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "lederberg",
    "liskov",
    "lovelace",
    "lumiere",
    "mahavira",
    "mayer",
    "mccarthy",
    "mclean",
    "meitner",
    "mendel",
    "mirzakhani",
    "morse",
    "napier",
    "newton",
    "nobel",
    "noether",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "ptolemy",
    "raman",
    "ramanujan",
    "ride",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swanson",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "visvesvaraya",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

pub(super) fn generate_name(attempt: usize) -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("getrandom");
    let a = ADJECTIVES[(b[0] as usize | (b[1] as usize) << 8) % ADJECTIVES.len()];
    let s = SURNAMES[(b[2] as usize | (b[3] as usize) << 8) % SURNAMES.len()];
    if a == "boring" && s == "wozniak" {
        return generate_name(attempt);
    }
    if attempt > 0 {
        format!("{a}_{s}{}", b[3] % 10)
    } else {
        format!("{a}_{s}")
    }
}

impl Containers {
    /// Renames a container. 409 if the name is taken, 400 if invalid.
    pub fn rename(&self, id: &str, new_name: &str) -> Result<Container, ContainerError> {
        let n = new_name.strip_prefix('/').unwrap_or(new_name);
        if !valid_name(n) {
            return Err(ContainerError::InvalidName(n.to_string()));
        }
        let mut inner = self.lock();
        let id = Self::find_id(&inner, id)?;
        if let Some(other) = inner.containers.values().find(|c| c.name == n) {
            if other.id == id {
                return Err(ContainerError::InvalidOption {
                    field: "name".into(),
                    reason: "Renaming a container with the same name as its current name"
                        .to_string(),
                });
            }
            return Err(ContainerError::NameInUse {
                name: n.to_string(),
                id: other.id.clone(),
            });
        }
        let c = inner.containers.get_mut(&id).expect("found above");
        c.name = n.to_string();
        let c = c.clone();
        drop(inner);
        self.persist(&c.id)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::stop::parse_signal;

    #[test]
    fn names_and_signals() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
        assert!(valid_name(&generate_name(0)));
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
    }
}
