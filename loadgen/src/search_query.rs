//! The searches `loadgen search` times: query strings of `GET /messages`
//! with placeholders (`{to}`, `{from}`, `{account}`) filled with values
//! sampled from the `messages` table, so each request asks about something
//! that exists, and page two (`cursor={cursor}`) reached as a person reaches
//! it: page one first, then its `next_cursor`.

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::read_loop::ReadPlan;

/// What a placeholder stands for: a column of `messages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placeholder {
    To,
    From,
    Account,
}

impl Placeholder {
    const ALL: [Self; 3] = [Self::To, Self::From, Self::Account];

    fn name(self) -> &'static str {
        match self {
            Self::To => "to",
            Self::From => "from",
            Self::Account => "account",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Self::To => "to_address",
            Self::From => "from_address",
            Self::Account => "account_sid",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Sent as written (already encoded, as in a URL).
    Literal(String),
    /// A sampled value, percent-encoded.
    Value(Placeholder),
}

/// A query string with placeholders, as given to `--query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryTemplate {
    /// As given, to name it in the report.
    written: String,
    /// Page one's query string (without `cursor={cursor}`).
    segments: Vec<Segment>,
    /// `cursor={cursor}` was given: page two is timed.
    second_page: bool,
}

impl fmt::Display for QueryTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl QueryTemplate {
    /// Reads `to={to}&status=delivered`: `{to}`, `{from}` and `{account}`
    /// anywhere in a value, and `cursor={cursor}` as a parameter of its own.
    pub fn parse(written: &str) -> Result<Self, String> {
        let query = written.trim().trim_start_matches('?');
        let mut second_page = false;
        let mut kept = Vec::new();
        for parameter in query.split('&').filter(|p| !p.is_empty()) {
            if parameter == "cursor={cursor}" {
                if second_page {
                    return Err("cursor={cursor} is given twice".into());
                }
                second_page = true;
            } else if parameter.contains("{cursor}") {
                return Err(format!(
                    "{{cursor}} stands for page one's next_cursor: write it as a parameter of its own, cursor={{cursor}} (not {parameter})"
                ));
            } else if parameter.starts_with("cursor=") {
                return Err(
                    "a literal cursor is not one this run was handed: write cursor={cursor}".into(),
                );
            } else {
                kept.push(parameter);
            }
        }
        Ok(Self {
            written: written.to_owned(),
            segments: segments(&kept.join("&"))?,
            second_page,
        })
    }

    pub fn second_page(&self) -> bool {
        self.second_page
    }

    /// The placeholders it uses.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Value(placeholder) => Some(*placeholder),
            Segment::Literal(_) => None,
        })
    }

    /// The path of page one for each combination of sampled values in
    /// turn: as many as the longest list of values it uses (one if it uses
    /// none), the others repeating.
    pub fn page_one_paths(&self, values: &SampledValues) -> anyhow::Result<Vec<String>> {
        let mut filled = BTreeMap::new();
        for placeholder in self.placeholders() {
            filled.insert(placeholder, values.of(placeholder)?);
        }
        let count = filled
            .values()
            .map(|sampled| sampled.len())
            .max()
            .unwrap_or(1);
        Ok((0..count)
            .map(|n| {
                let mut query = String::new();
                for segment in &self.segments {
                    match segment {
                        Segment::Literal(text) => query.push_str(text),
                        Segment::Value(placeholder) => {
                            if let Some(sampled) = filled.get(placeholder) {
                                // `of` never answers an empty list.
                                query.push_str(&encode(&sampled[n % sampled.len()]));
                            }
                        }
                    }
                }
                messages_path(&query)
            })
            .collect())
    }
}

fn segments(query: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = query;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .map(|at| open + at)
            .ok_or_else(|| format!("an unclosed {{ in {query}"))?;
        let name = &rest[open + 1..close];
        let placeholder = Placeholder::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!("unknown placeholder {{{name}}} (known: {{to}}, {{from}}, {{account}}, and cursor={{cursor}})")
            })?;
        segments.push(Segment::Value(placeholder));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_owned()));
    }
    Ok(segments)
}

fn messages_path(query: &str) -> String {
    if query.is_empty() {
        "/messages".to_owned()
    } else {
        format!("/messages?{query}")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters: a `+`
/// in a phone number must not arrive as a space.
fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Values of each placeholder, sampled from `messages`.
#[derive(Debug, Default)]
pub struct SampledValues(BTreeMap<Placeholder, Vec<String>>);

impl SampledValues {
    fn of(&self, placeholder: Placeholder) -> anyhow::Result<&[String]> {
        self.0
            .get(&placeholder)
            .map(Vec::as_slice)
            .filter(|values| !values.is_empty())
            .with_context(|| format!("no values sampled for {{{}}}", placeholder.name()))
    }

    /// `count` values of each placeholder in `needed` (fewer in a small
    /// table): those of messages picked at random, so a value comes up as
    /// often as its messages do (the sender of every message, every time;
    /// a recipient with many messages more often than one with few, as at a
    /// support desk).
    pub async fn sample(
        db: &DatabaseConnection,
        needed: impl IntoIterator<Item = Placeholder>,
        count: usize,
    ) -> anyhow::Result<Self> {
        let count = count.max(1);
        let rows = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT reltuples::float8 AS rows FROM pg_class WHERE oid = 'messages'::regclass",
            ))
            .await?
            .context("no messages table: is this the worker's database?")?;
        let estimated: f64 = rows.try_get("", "rows")?;
        let mut values = BTreeMap::new();
        for placeholder in needed {
            if values.contains_key(&placeholder) {
                continue;
            }
            let mut sampled =
                sample_column(db, placeholder, count, percent(count, estimated)).await?;
            if sampled.is_empty() {
                // An unlucky sample of a few pages, or statistics that are
                // off: the whole table, once.
                sampled = sample_column(db, placeholder, count, 100.0).await?;
            }
            if sampled.is_empty() {
                bail!(
                    "no message has a {} to fill {{{}}} with",
                    placeholder.column(),
                    placeholder.name()
                );
            }
            values.insert(placeholder, sampled);
        }
        Ok(Self(values))
    }
}

/// The share of the table's pages to read for about four times `count`
/// rows: a few hundred pages of a large table, not the whole of it.
fn percent(count: usize, estimated_rows: f64) -> f64 {
    if estimated_rows <= 0.0 {
        return 100.0;
    }
    (400.0 * count as f64 / estimated_rows).clamp(0.0001, 100.0)
}

async fn sample_column(
    db: &DatabaseConnection,
    placeholder: Placeholder,
    count: usize,
    percent: f64,
) -> anyhow::Result<Vec<String>> {
    let column = placeholder.column();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT value FROM (SELECT {column} AS value FROM messages \
                 TABLESAMPLE SYSTEM ({percent}) WHERE {column} IS NOT NULL) AS sampled \
                 ORDER BY random() LIMIT $1"
            ),
            [(count as i64).into()],
        ))
        .await
        .with_context(|| format!("sampling {column}"))?;
    Ok(rows
        .iter()
        .map(|row| row.try_get::<String>("", "value"))
        .collect::<Result<_, _>>()?)
}

/// What `count_messages` and `second_pages` read of an answer.
#[derive(Deserialize)]
struct PageBody {
    messages: Vec<serde::de::IgnoredAny>,
    next_cursor: Option<String>,
}

/// The messages in a `GET /messages` answer (0 for anything else).
pub fn count_messages(body: &[u8]) -> u64 {
    serde_json::from_slice::<PageBody>(body).map_or(0, |page| page.messages.len() as u64)
}

/// Page two's path for each page one that has a next page, and how many
/// had none. Each distinct page one is fetched once, one at a time,
/// untimed.
pub async fn second_pages(
    plan: &ReadPlan,
    page_one: &[String],
) -> anyhow::Result<(Vec<String>, usize)> {
    let mut connection = plan.connect()?;
    let mut page_two: HashMap<&str, Option<String>> = HashMap::new();
    let mut paths = Vec::new();
    let mut last_pages = 0;
    for path in page_one {
        if !page_two.contains_key(path.as_str()) {
            let (answer, body) = connection.get(path).await;
            if answer != crate::client::Answer::Status(200) {
                bail!("page one, {path}, answered {answer:?}");
            }
            let page: PageBody = serde_json::from_slice(&body)
                .with_context(|| format!("page one, {path}, is not a page of messages"))?;
            let separator = if path.contains('?') { '&' } else { '?' };
            let next = page
                .next_cursor
                .map(|cursor| format!("{path}{separator}cursor={}", encode(&cursor)));
            page_two.insert(path, next);
        }
        match page_two.get(path.as_str()) {
            Some(Some(next)) => paths.push(next.clone()),
            _ => last_pages += 1,
        }
    }
    Ok((paths, last_pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> SampledValues {
        SampledValues(BTreeMap::from([
            (
                Placeholder::To,
                vec![
                    "+15550000001".to_owned(),
                    "whatsapp:+15550000002".to_owned(),
                ],
            ),
            (Placeholder::From, vec!["+15017122661".to_owned()]),
        ]))
    }

    #[test]
    fn placeholders_are_filled_in_turn_and_encoded() {
        let template = QueryTemplate::parse("to={to}&from={from}&status=delivered").unwrap();
        assert!(!template.second_page());
        assert_eq!(
            template.page_one_paths(&values()).unwrap(),
            [
                "/messages?to=%2B15550000001&from=%2B15017122661&status=delivered",
                "/messages?to=whatsapp%3A%2B15550000002&from=%2B15017122661&status=delivered",
            ]
        );
    }

    #[test]
    fn a_query_without_placeholders_is_one_path() {
        let template = QueryTemplate::parse("?status=failed&since=24h").unwrap();
        assert_eq!(
            template.page_one_paths(&values()).unwrap(),
            ["/messages?status=failed&since=24h"]
        );
        assert_eq!(
            QueryTemplate::parse("")
                .unwrap()
                .page_one_paths(&values())
                .unwrap(),
            ["/messages"]
        );
    }

    #[test]
    fn page_two_is_page_one_and_its_cursor() {
        let template = QueryTemplate::parse("to={to}&cursor={cursor}&limit=1").unwrap();
        assert!(template.second_page());
        assert_eq!(template.to_string(), "to={to}&cursor={cursor}&limit=1");
        assert_eq!(
            template.page_one_paths(&values()).unwrap()[0],
            "/messages?to=%2B15550000001&limit=1"
        );
    }

    #[test]
    fn a_value_never_sampled_is_an_error_not_an_empty_filter() {
        let template = QueryTemplate::parse("account_sid={account}").unwrap();
        assert!(template.page_one_paths(&values()).is_err());
    }

    #[test]
    fn malformed_templates_are_refused_naming_the_problem() {
        for (written, named) in [
            ("to={recipient}", "unknown placeholder {recipient}"),
            ("to={to", "unclosed"),
            ("to={to}&cursor={cursor}&cursor={cursor}", "twice"),
            ("to={to}&c={cursor}", "parameter of its own"),
            ("cursor=djE6MTox", "literal cursor"),
        ] {
            let error = QueryTemplate::parse(written).unwrap_err();
            assert!(error.contains(named), "{written}: {error}");
        }
    }

    #[test]
    fn a_large_table_is_sampled_a_few_pages_at_a_time() {
        assert_eq!(percent(1000, -1.0), 100.0);
        assert_eq!(percent(1000, 100_000.0), 4.0);
        assert!(percent(1000, 10_000_000.0) < 0.05);
        assert_eq!(percent(1000, 1000.0), 100.0);
    }

    #[test]
    fn rows_are_counted_in_a_page() {
        assert_eq!(
            count_messages(br#"{"messages":[{"a":1},{"b":2}],"next_cursor":null}"#),
            2
        );
        assert_eq!(count_messages(b"not json"), 0);
    }
}
