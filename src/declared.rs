//! Declared settings: the user's word on a layer's hyper-parameters, for
//! what the files do not hold (a checkpoint stores variables, never ε).
//!
//! Every command takes the same declarations: `--epsilon`, `--momentum`,
//! `--axis`, `--fused` and `--variance`, each `[GLOB=]VALUE` and
//! repeatable, and a `--hyper FILE` sidecar (TOML or JSON) holding the
//! same per layer glob:
//!
//! ```toml
//! bn = ["*_bn:gamma=scale,beta=offset,moving_mean=pop_mean,moving_variance=pop_var"]
//! allow = ["variance-convention=head/*"]
//!
//! [layers."block1/bn"]
//! epsilon = 1e-5
//! momentum = 0.9
//! axis = 3
//! fused = true        # or false, or "auto" (TF's rule decides: fused=None)
//! variance = "bessel" # or "biased"
//! ```
//!
//! A GLOB (`*` any run, `?` one character) matches a layer's name or
//! object path as `tfbn inspect` lists them; no GLOB means every layer.
//! Declarations apply in order (the sidecar's, in file order, then the
//! flags'), so a later one wins over an earlier one for the same layer and
//! setting. A declared value replaces whatever the files said and is
//! marked [`HyperSource::Flag`] or [`HyperSource::Sidecar`].

use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hyper::{HyperSource, LayerHyper, Sourced, VarianceConvention};
use crate::layers::BnLayer;
use crate::mapping::glob_match;

/// One declared value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    /// ε (finite, non-negative).
    Epsilon(f64),
    /// Momentum in TF's convention, the weight of the old value (0 to 1).
    Momentum(f64),
    /// The channel axis (negative counts from the end).
    Axis(i64),
    /// The layer's `fused` argument: `Some(true)`, `Some(false)`, or `None`
    /// (`auto`: TF's rule decides, as `fused=None` does).
    Fused(Option<bool>),
    /// What the stored moving variance holds.
    Variance(VarianceConvention),
}

impl Setting {
    /// The names [`Setting::parse`] takes, in order.
    pub const NAMES: [&'static str; 5] = ["epsilon", "momentum", "axis", "fused", "variance"];

    /// `epsilon`, `momentum`, `axis`, `fused` or `variance`.
    pub fn name(&self) -> &'static str {
        match self {
            Setting::Epsilon(_) => "epsilon",
            Setting::Momentum(_) => "momentum",
            Setting::Axis(_) => "axis",
            Setting::Fused(_) => "fused",
            Setting::Variance(_) => "variance",
        }
    }

    /// Parses `value` as the setting called `name` ([`Setting::NAMES`]).
    pub fn parse(name: &str, value: &str) -> std::result::Result<Setting, String> {
        let v = value.trim();
        let float = |ok: &dyn Fn(f64) -> bool, range: &str| -> std::result::Result<f64, String> {
            let x: f64 = v
                .parse()
                .map_err(|_| format!("{name} {v:?} is not a number"))?;
            if !x.is_finite() || !ok(x) {
                return Err(format!("{name} {v:?} is out of range ({range})"));
            }
            Ok(x)
        };
        Ok(match name {
            "epsilon" => Setting::Epsilon(float(&|x| x >= 0.0, "finite, at least 0")?),
            "momentum" => Setting::Momentum(float(&|x| (0.0..=1.0).contains(&x), "0 to 1")?),
            "axis" => Setting::Axis(
                v.parse()
                    .map_err(|_| format!("axis {v:?} is not an integer"))?,
            ),
            "fused" => Setting::Fused(match v.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                "auto" | "none" => None,
                _ => return Err(format!("fused {v:?}: expected true, false or auto")),
            }),
            "variance" => Setting::Variance(match v.to_ascii_lowercase().as_str() {
                "biased" => VarianceConvention::Biased,
                "bessel" | "unbiased" => VarianceConvention::Bessel,
                _ => return Err(format!("variance {v:?}: expected biased or bessel")),
            }),
            _ => {
                return Err(format!(
                    "unknown setting {name:?}; settings are {}",
                    Setting::NAMES.join(", ")
                ))
            }
        })
    }
}

/// Where a declaration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (`--epsilon …`).
    Flag,
    /// A `--hyper` sidecar, as given.
    Sidecar(String),
}

impl Origin {
    /// The provenance a declared value carries.
    pub fn source(&self) -> HyperSource {
        match self {
            Origin::Flag => HyperSource::Flag,
            Origin::Sidecar(file) => HyperSource::Sidecar { file: file.clone() },
        }
    }

    /// The sidecar it came from, if any.
    fn sidecar(&self) -> Option<String> {
        match self {
            Origin::Flag => None,
            Origin::Sidecar(file) => Some(file.clone()),
        }
    }
}

/// One declaration: a setting for the layers a glob matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// Layer glob; `None`: every layer.
    pub glob: Option<String>,
    /// The value.
    pub setting: Setting,
    /// Where it came from.
    pub origin: Origin,
}

impl Declaration {
    /// Parses a flag's `[GLOB=]VALUE` (split at the last `=`) for the
    /// setting `name`.
    pub fn parse_flag(name: &str, text: &str) -> Result<Declaration> {
        let (glob, value) = match text.rsplit_once('=') {
            Some((g, v)) => (Some(g.to_string()), v),
            None => (None, text),
        };
        if glob.as_deref() == Some("") {
            return Err(Error::DeclarationInvalid {
                declaration: format!("{name} {text}"),
                why: "the GLOB before '=' is empty".into(),
            });
        }
        let setting = Setting::parse(name, value).map_err(|why| Error::DeclarationInvalid {
            declaration: format!("{name} {text}"),
            why,
        })?;
        Ok(Declaration {
            glob,
            setting,
            origin: Origin::Flag,
        })
    }

    /// True when the declaration applies to `layer`.
    pub fn matches(&self, layer: &BnLayer) -> bool {
        self.glob.as_deref().is_none_or(|g| layer_matches(g, layer))
    }
}

/// True when `glob` matches the layer's name or object path.
pub fn layer_matches(glob: &str, layer: &BnLayer) -> bool {
    glob_match(glob, &layer.name)
        || layer
            .object_path
            .as_deref()
            .is_some_and(|p| glob_match(glob, p))
}

/// Every declaration of a run, in the order they apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    /// Declarations; a later one wins over an earlier one.
    pub declarations: Vec<Declaration>,
}

impl Declared {
    /// True when nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.declarations.is_empty()
    }

    /// Adds a declaration (it wins over earlier ones).
    pub fn push(&mut self, d: Declaration) {
        self.declarations.push(d);
    }

    /// Checks that every glob names at least one of `layers`, so that a
    /// typo is an error rather than a setting silently left assumed.
    pub fn check(&self, layers: &[BnLayer]) -> Result<()> {
        for d in &self.declarations {
            if let Some(g) = &d.glob {
                if !layers.iter().any(|l| layer_matches(g, l)) {
                    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                    return Err(Error::PatternMatchesNoLayer {
                        setting: d.setting.name(),
                        sidecar: d.origin.sidecar(),
                        pattern: g.clone(),
                        known: if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        },
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies the declarations for `layer` to `hyper` (ε, momentum, axis,
    /// fused; the variance is [`Declared::variance`]'s). Returns one note
    /// per value that replaced a different one the files gave.
    pub fn apply(&self, layer: &BnLayer, hyper: &mut LayerHyper) -> Vec<String> {
        fn set<T: PartialEq + Clone>(
            slot: &mut Sourced<T>,
            v: T,
            source: HyperSource,
            name: &str,
            show: impl Fn(&T) -> String,
            notes: &mut Vec<String>,
        ) {
            if slot.value != v && !slot.is_default() && !slot.is_declared() {
                notes.push(format!(
                    "{name} {} ({source}) replaces {} ({})",
                    show(&v),
                    show(&slot.value),
                    slot.source
                ));
            }
            *slot = Sourced { value: v, source };
        }
        let mut notes = Vec::new();
        for d in self.declarations.iter().filter(|d| d.matches(layer)) {
            let src = d.origin.source();
            match d.setting {
                Setting::Epsilon(e) => set(
                    &mut hyper.epsilon,
                    e,
                    src,
                    "epsilon",
                    |v| v.to_string(),
                    &mut notes,
                ),
                Setting::Momentum(m) => set(
                    &mut hyper.momentum,
                    m,
                    src,
                    "momentum",
                    |v| v.to_string(),
                    &mut notes,
                ),
                Setting::Axis(a) => set(
                    &mut hyper.axis,
                    a,
                    src,
                    "axis",
                    |v| v.to_string(),
                    &mut notes,
                ),
                Setting::Fused(f) => set(
                    &mut hyper.fused,
                    f,
                    src,
                    "fused",
                    |v| fused_label(*v).to_string(),
                    &mut notes,
                ),
                Setting::Variance(_) => {}
            }
        }
        notes
    }

    /// The declared moving-variance convention of `layer`, if any (the last
    /// declaration that matches).
    pub fn variance(&self, layer: &BnLayer) -> Option<Sourced<VarianceConvention>> {
        self.declarations
            .iter()
            .rev()
            .filter(|d| d.matches(layer))
            .find_map(|d| match d.setting {
                Setting::Variance(v) => Some(Sourced {
                    value: v,
                    source: d.origin.source(),
                }),
                _ => None,
            })
    }
}

/// `true`, `false` or `auto` for a `fused` value.
pub fn fused_label(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "auto",
    }
}

/// A `--hyper` sidecar: declarations, declared layers (`bn`, as `--bn`
/// takes them) and lint allowances (`allow`, as `--allow` takes them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HyperFile {
    /// The `layers` table, in file order.
    pub declared: Declared,
    /// `[GLOB:]ROLE=NAME,…` mappings.
    pub bn: Vec<String>,
    /// `CODE[=LAYER_GLOB]` allowances.
    pub allow: Vec<String>,
}

/// A `fused` value in a sidecar: a boolean or `"auto"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum FusedValue {
    Bool(bool),
    Text(String),
}

/// A number a sidecar may write as an integer or a float.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn text(&self) -> String {
        match self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => format!("{f:?}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    epsilon: Option<Number>,
    momentum: Option<Number>,
    axis: Option<Number>,
    fused: Option<FusedValue>,
    variance: Option<String>,
}

/// The `layers` table in document order.
struct Ordered(Vec<(String, FileLayer)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of layer globs")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, FileLayer>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    layers: Option<Ordered>,
    #[serde(default)]
    bn: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
}

/// Reads a sidecar: JSON when the file name ends in `.json` or the text
/// starts with `{`, else TOML.
pub fn read_hyper_file(path: &Path) -> Result<HyperFile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_hyper_file(&text, &path.to_string_lossy())
}

/// Parses a sidecar's text; `file` names it in errors and provenance.
pub fn parse_hyper_file(text: &str, file: &str) -> Result<HyperFile> {
    let bad = |why: String| Error::HyperFileInvalid {
        file: file.to_string(),
        why,
    };
    let json = file.ends_with(".json") || text.trim_start().starts_with('{');
    let doc: FileDoc = if json {
        serde_json::from_str(text).map_err(|e| bad(format!("JSON: {e}")))?
    } else {
        toml::from_str(text).map_err(|e| bad(format!("TOML: {}", e.to_string().trim_end())))?
    };
    let origin = Origin::Sidecar(file.to_string());
    let mut declared = Declared::default();
    for (glob, l) in doc.layers.map(|o| o.0).unwrap_or_default() {
        if glob.is_empty() {
            return Err(bad("a layer glob is empty".into()));
        }
        let fused = l.fused.map(|f| match f {
            FusedValue::Bool(b) => b.to_string(),
            FusedValue::Text(t) => t,
        });
        let values = [
            ("epsilon", l.epsilon.map(|n| n.text())),
            ("momentum", l.momentum.map(|n| n.text())),
            ("axis", l.axis.map(|n| n.text())),
            ("fused", fused),
            ("variance", l.variance),
        ];
        for (name, value) in values {
            let Some(value) = value else { continue };
            let setting = Setting::parse(name, &value)
                .map_err(|why| bad(format!("layers.{glob:?}: {why}")))?;
            declared.push(Declaration {
                glob: Some(glob.clone()),
                setting,
                origin: origin.clone(),
            });
        }
    }
    Ok(HyperFile {
        declared,
        bn: doc.bn,
        allow: doc.allow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_and_without_glob() {
        let d = Declaration::parse_flag("epsilon", "a/bn=1e-5").unwrap();
        assert_eq!(d.glob.as_deref(), Some("a/bn"));
        assert_eq!(d.setting, Setting::Epsilon(1e-5));
        let d = Declaration::parse_flag("axis", "-1").unwrap();
        assert_eq!((d.glob, d.setting), (None, Setting::Axis(-1)));
        let d = Declaration::parse_flag("axis", "bn=-3").unwrap();
        assert_eq!(d.setting, Setting::Axis(-3));
        let d = Declaration::parse_flag("fused", "auto").unwrap();
        assert_eq!(d.setting, Setting::Fused(None));
        for (name, bad) in [
            ("epsilon", "-1"),
            ("epsilon", "x"),
            ("momentum", "1.5"),
            ("axis", "1.5"),
            ("fused", "maybe"),
            ("variance", "sideways"),
            ("epsilon", "=1e-3"),
        ] {
            assert!(Declaration::parse_flag(name, bad).is_err(), "{name} {bad}");
        }
    }

    #[test]
    fn sidecars_parse_in_file_order_as_toml_and_json() {
        let toml = r#"
bn = ["moving_mean=m,moving_variance=v"]
allow = ["variance-convention"]
[layers."z*"]
epsilon = 1e-5
[layers.a]
epsilon = 2e-5
momentum = 0.9
axis = 3
fused = "auto"
variance = "bessel"
"#;
        let f = parse_hyper_file(toml, "h.toml").unwrap();
        let globs: Vec<&str> = f
            .declared
            .declarations
            .iter()
            .map(|d| d.glob.as_deref().unwrap())
            .collect();
        assert_eq!(globs, ["z*", "a", "a", "a", "a", "a"]);
        assert_eq!(f.bn.len(), 1);
        assert_eq!(f.allow, ["variance-convention"]);
        assert_eq!(
            f.declared.declarations[0].origin,
            Origin::Sidecar("h.toml".into())
        );
        let json = r#"{"layers": {"z*": {"epsilon": 1e-5}, "a": {"axis": -1, "fused": true}}}"#;
        let f = parse_hyper_file(json, "h.json").unwrap();
        let globs: Vec<&str> = f
            .declared
            .declarations
            .iter()
            .map(|d| d.glob.as_deref().unwrap())
            .collect();
        assert_eq!(globs, ["z*", "a", "a"]);
        assert_eq!(
            f.declared.declarations[2].setting,
            Setting::Fused(Some(true))
        );
        for bad in [
            r#"{"layers": {"a": {"eps": 1}}}"#,
            r#"{"layers": {"a": {"momentum": 2}}}"#,
            r#"{"extra": 1}"#,
            "layers = 3",
        ] {
            assert!(parse_hyper_file(bad, "x").is_err(), "{bad}");
        }
    }
}
