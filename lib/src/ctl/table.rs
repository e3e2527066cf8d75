//! A bordered text table, in the style of `patronictl list`.

/// A table: a header row and data rows, all cells text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Table {
            header: header.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table with `+---+` borders; every line ends with a newline.
    pub(crate) fn render(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let rule: String = {
            let mut s = String::from("+");
            for w in &width {
                s.push_str(&"-".repeat(w + 2));
                s.push('+');
            }
            s.push('\n');
            s
        };
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in width.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w - c.chars().count();
                s.push(' ');
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 1));
                s.push('|');
            }
            s.push('\n');
            s
        };
        let mut out = rule.clone();
        out.push_str(&line(&self.header));
        out.push_str(&rule);
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out.push_str(&rule);
        out
    }
}

/// Two columns, `key: value`, keys padded to the same width.
pub(crate) fn pairs(items: &[(&str, String)]) -> String {
    let w = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (k, v) in items {
        s.push_str(&format!("{k:<w$}  {v}\n", w = w + 1, k = format!("{k}:")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&["Node", "Role"]);
        t.row(vec!["node1".into(), "Promoted".into()]);
        t.row(vec!["n2".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "+-------+----------+\n\
             | Node  | Role     |\n\
             +-------+----------+\n\
             | node1 | Promoted |\n\
             | n2    | -        |\n\
             +-------+----------+\n"
        );
    }

    #[test]
    fn pairs_align_their_values() {
        assert_eq!(
            pairs(&[("role", "primary".into()), ("timeline", "2".into())]),
            "role:      primary\ntimeline:  2\n"
        );
    }
}
