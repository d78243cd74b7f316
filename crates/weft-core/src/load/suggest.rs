//! "Did you mean ...?" for misspelt keys, steps, inputs and tools.

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo.
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).max(1);
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            // `attempts` for `max_attempts`: a part of the name counts as close.
            if word.len() >= 4 && lower.contains(&word) {
                return Some((1, c));
            }
            let d = distance(&word, &lower);
            (d <= limit).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"`, or nothing.
pub(crate) fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Edit distance over characters where swapping two neighbours counts as one edit
/// (optimal string alignment), so `wiht` is one edit from `with`.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_but_not_strangers() {
        assert_eq!(closest("need", ["needs", "tool", "with"]), Some("needs"));
        assert_eq!(closest("wiht", ["needs", "tool", "with"]), Some("with"));
        assert_eq!(closest("banana", ["needs", "tool", "with"]), None);
        assert_eq!(
            closest("attempts", ["max_attempts", "backoff"]),
            Some("max_attempts")
        );
    }
}
