//! Declared layers: the user's word on which variables form a batch-norm
//! layer, for files whose names follow no convention and that carry no
//! graph (a hand-written TF1 layer saved without its `.meta`).
//!
//! Written `[GLOB:]ROLE=NAME,ROLE=NAME,…`, e.g.
//! `*_bn:gamma=scale,beta=offset,moving_mean=pop_mean,moving_variance=pop_var`:
//! every scope matching `GLOB` (`*` and `?` wildcards; all scopes when
//! omitted) that holds variables with these last name components is a
//! layer, its variables taking the roles given.

use crate::error::{Error, Result};

/// One declared mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerMapping {
    /// Which scopes (the variable name without its last component) it
    /// applies to.
    pub scope_glob: String,
    /// `(role name, last name component)`: role names are TF's (`gamma`,
    /// `beta`, `moving_mean`, `moving_variance`, `moving_stddev`,
    /// `renorm_mean`, `renorm_stddev`).
    pub leaves: Vec<(String, String)>,
}

/// The role names a mapping may use.
pub const ROLE_NAMES: [&str; 7] = [
    "gamma",
    "beta",
    "moving_mean",
    "moving_variance",
    "moving_stddev",
    "renorm_mean",
    "renorm_stddev",
];

impl std::str::FromStr for LayerMapping {
    type Err = Error;

    fn from_str(text: &str) -> Result<LayerMapping> {
        let bad = |why: String| Error::LayerMappingInvalid {
            mapping: text.to_string(),
            why,
        };
        // The glob ends at the last ':' before the first '='.
        let eq = text
            .find('=')
            .ok_or_else(|| bad("no ROLE=NAME pair".into()))?;
        let (scope_glob, pairs) = match text[..eq].rfind(':') {
            Some(c) => (&text[..c], &text[c + 1..]),
            None => ("*", text),
        };
        let mut leaves: Vec<(String, String)> = Vec::new();
        for pair in pairs.split(',').filter(|p| !p.trim().is_empty()) {
            let (role, leaf) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("{pair:?} is not ROLE=NAME")))?;
            let (role, leaf) = (role.trim(), leaf.trim());
            if !ROLE_NAMES.contains(&role) {
                return Err(bad(format!(
                    "unknown role {role:?}; roles are {}",
                    ROLE_NAMES.join(", ")
                )));
            }
            if leaf.is_empty() || leaf.contains('/') {
                return Err(bad(format!(
                    "the name for {role} must be one non-empty name component, not {leaf:?}"
                )));
            }
            if leaves.iter().any(|(r, _)| r == role) {
                return Err(bad(format!("{role} is given twice")));
            }
            leaves.push((role.to_string(), leaf.to_string()));
        }
        for needed in ["moving_mean", "moving_variance"] {
            if !leaves.iter().any(|(r, _)| r == needed) {
                return Err(bad(format!("a layer needs {needed}")));
            }
        }
        Ok(LayerMapping {
            scope_glob: if scope_glob.is_empty() {
                "*"
            } else {
                scope_glob
            }
            .to_string(),
            leaves,
        })
    }
}

impl LayerMapping {
    /// The role `leaf` takes in a scope matching this mapping.
    pub fn role_of(&self, scope: &str, leaf: &str) -> Option<&str> {
        if !glob_match(&self.scope_glob, scope) {
            return None;
        }
        self.leaves
            .iter()
            .find(|(_, l)| l == leaf)
            .map(|(r, _)| r.as_str())
    }
}

/// `*` (any run, `/` included) and `?` (one character) wildcards; all
/// other characters match themselves.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("*_bn", "model/conv1_bn"));
        assert!(!glob_match("*_bn", "model/conv1_bn/x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn parses_with_and_without_glob() {
        let m: LayerMapping =
            "*_bn:gamma=scale,beta=offset,moving_mean=pop_mean,moving_variance=pop_var"
                .parse()
                .unwrap();
        assert_eq!(m.scope_glob, "*_bn");
        assert_eq!(m.role_of("conv1_bn", "pop_var"), Some("moving_variance"));
        assert_eq!(m.role_of("conv1", "pop_var"), None);
        let m: LayerMapping = "moving_mean=m,moving_variance=v".parse().unwrap();
        assert_eq!(m.scope_glob, "*");
        // A glob may itself hold ':'.
        let m: LayerMapping = "a:b:moving_mean=m,moving_variance=v".parse().unwrap();
        assert_eq!(m.scope_glob, "a:b");
    }

    #[test]
    fn rejects_bad_mappings() {
        for bad in [
            "",
            "gamma",
            "x:gamma=s",
            "weird=s,moving_mean=m,moving_variance=v",
            "moving_mean=m,moving_mean=n,moving_variance=v",
            "moving_mean=a/b,moving_variance=v",
        ] {
            assert!(bad.parse::<LayerMapping>().is_err(), "{bad:?}");
        }
    }
}
