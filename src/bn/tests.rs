//! End-to-end tests of the public API on edge cases.

use super::*;
