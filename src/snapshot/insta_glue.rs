//! insta integration (feature `insta`): a [`insta::Comparator`] that
//! compares tfbn snapshot texts under a tolerance and prints what moved.

pub use insta;

use super::{drifts, Snapshot, Tolerance};

/// Compares numeric snapshots under a tolerance; texts that are not tfbn
/// snapshots fall back to plain equality.
#[derive(Debug, Clone, Copy)]
pub struct NumericComparator {
    /// The tolerance.
    pub tolerance: Tolerance,
}

impl insta::Comparator for NumericComparator {
    fn matches(&self, reference: &insta::Snapshot, test: &insta::Snapshot) -> bool {
        let text = |s: &insta::Snapshot| s.contents().as_text().map(|t| t.to_string());
        let (Some(old), Some(new)) = (text(reference), text(test)) else {
            return insta::DefaultComparator.matches(reference, test);
        };
        match (Snapshot::parse(&old), Snapshot::parse(&new)) {
            (Ok(o), Ok(n)) => {
                let drifts = drifts(&o, &n, self.tolerance);
                for d in &drifts {
                    eprintln!("tfbn snapshot drift ({}): {d}", self.tolerance);
                }
                drifts.is_empty()
            }
            _ => old == new,
        }
    }

    fn dyn_clone(&self) -> Box<dyn insta::Comparator> {
        Box::new(*self)
    }
}

/// Settings with the numeric comparator for `tolerance` bound.
pub fn settings(tolerance: Tolerance) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_comparator(Box::new(NumericComparator { tolerance }));
    s
}
