//! One scheme for the labels of tfbn's enums (types, APIs, presets,
//! backends, lint codes …): `Display` writes the label that reports, JSON
//! and metadata use, and `FromStr` reads it back (with the aliases each
//! type documents), failing with [`UnknownLabel`]. Types whose label is
//! also needed as a `&'static str` keep a `label()` accessor that
//! `Display` writes.

use std::fmt;

/// A label that no value of the type it was parsed as carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLabel {
    /// What was being parsed (`dtype`, `preset`, `API` …).
    pub what: &'static str,
    /// The text as given.
    pub text: String,
}

impl fmt::Display for UnknownLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.text)
    }
}

impl std::error::Error for UnknownLabel {}

/// Implements `FromStr` for `$t` through its private
/// `fn from_label(&str) -> Option<$t>`, naming the type `$what` in the
/// error.
macro_rules! from_label {
    ($t:ty, $what:literal) => {
        impl std::str::FromStr for $t {
            type Err = $crate::label::UnknownLabel;

            fn from_str(s: &str) -> std::result::Result<$t, $crate::label::UnknownLabel> {
                <$t>::from_label(s).ok_or_else(|| $crate::label::UnknownLabel {
                    what: $what,
                    text: s.to_string(),
                })
            }
        }
    };
}
pub(crate) use from_label;

/// Implements `Display` for `$t` as its `label()`.
macro_rules! display_label {
    ($($t:ty),* $(,)?) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    )*};
}
pub(crate) use display_label;

#[cfg(test)]
mod tests {
    use std::fmt::{Debug, Display};
    use std::str::FromStr;

    fn round_trip<T: Display + FromStr + PartialEq + Debug + Copy>(all: &[T]) {
        for &v in all {
            assert_eq!(v.to_string().parse::<T>().ok(), Some(v), "{v}");
        }
    }

    #[test]
    fn every_label_reads_back_as_its_value() {
        round_trip(&crate::hyper::Assumed::ALL);
        round_trip(&crate::bn::BnApi::ALL);
        round_trip(&crate::export::Preset::ALL);
        round_trip(&crate::export::DtypeCast::ALL);
        round_trip(&crate::dtype::FloatDType::ALL);
        round_trip(&crate::lint::Code::ALL);
        #[cfg(feature = "tf")]
        round_trip(&crate::verify::InputCase::ALL);
    }

    #[test]
    fn an_unknown_label_names_what_was_parsed() {
        let e = "nope".parse::<crate::export::Preset>().unwrap_err();
        assert_eq!(e.to_string(), "unknown preset \"nope\"");
        let e = "f8".parse::<crate::dtype::FloatDType>().unwrap_err();
        assert_eq!(e.to_string(), "unknown type \"f8\"");
    }
}
