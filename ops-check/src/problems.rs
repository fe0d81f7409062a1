//! Problems are collected, then reported together: one failing check should
//! not hide the next, and a reader fixing the files wants the whole list.

/// Everything a check found wrong, as messages naming the file and the place.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether some problem mentions all of `needles` (for the tests that
    /// break a file on purpose and look for the complaint).
    pub fn mentions(&self, needles: &[&str]) -> bool {
        self.iter()
            .any(|problem| needles.iter().all(|needle| problem.contains(needle)))
    }

    /// Panics with every problem, one a line, unless there are none.
    #[track_caller]
    pub fn assert_none(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} problem(s):\n  - {}\n",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Problems;

    #[test]
    fn reports_every_problem() {
        let mut problems = Problems::default();
        assert!(problems.is_empty());
        problems.push("a.yml: first");
        problems.push("b.yml: second");
        assert!(problems.mentions(&["b.yml", "second"]));
        assert!(!problems.mentions(&["a.yml", "second"]));
        let message = std::panic::catch_unwind(|| problems.assert_none("files"))
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains("files: 2 problem(s)"), "{message}");
        assert!(
            message.contains("  - a.yml: first\n  - b.yml: second"),
            "{message}"
        );
    }
}
