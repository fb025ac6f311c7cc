//! A mail as sent: the rendered parts, the threading headers, and the
//! history head every mail carries (`X-Haltwatch-History-Head` and a last
//! line), which makes each responder's mailbox a witness of the history.

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::{NotifyError, email};

/// `X-Haltwatch-History-Head: N 0x…`: the history's ledger head when the
/// mail was written. Every responder's mailbox keeps a copy, so a later
/// truncation or rewrite of the history is caught by
/// `haltwatch verify --history --head 0x…`.
#[derive(Debug, Clone)]
struct HistoryHeadHeader(String);

impl lettre::message::header::Header for HistoryHeadHeader {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Haltwatch-History-Head")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(HistoryHeadHeader(s.to_string()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The history head as mails print it: `History head: 0x… (record N)`.
pub fn history_head_line((records, hash): (i64, alloy::primitives::B256)) -> String {
    format!("History head: {hash} (record {records})")
}

pub(super) fn build(
    from: &Mailbox,
    recipients: &[String],
    message_id: &str,
    thread: Option<String>,
    head: (i64, alloy::primitives::B256),
    mut rendered: email::Rendered,
) -> Result<Message, NotifyError> {
    let line = history_head_line(head);
    rendered.text = format!("{}\n\n{line}\n", rendered.text.trim_end());
    let footer = format!(
        "<p style=\"color:#57606a;font-size:.8rem\">{}</p>",
        crate::render::esc(&line)
    );
    match rendered.html.rfind("</body>") {
        Some(at) => rendered.html.insert_str(at, &footer),
        None => rendered.html.push_str(&footer),
    }
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(rendered.subject)
        .message_id(Some(message_id.to_string()))
        .header(HistoryHeadHeader(format!("{} {}", head.0, head.1)));
    for r in recipients {
        let mailbox: Mailbox = r.parse().map_err(|_| NotifyError::Recipient(r.clone()))?;
        builder = builder.to(mailbox);
    }
    if let Some(root) = thread {
        builder = builder.in_reply_to(root.clone()).references(root);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(rendered.text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(rendered.html),
                ),
        )
        .map_err(NotifyError::Build)
}
