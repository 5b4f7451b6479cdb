"""Built-in transforms: one CEL expression per chat service, turning any event (alerts too)
into a message a person reads.

Each one has two shapes: a tillhook alert (a `tillhook.` type whose data has a `summary`)
leads with the summary and the check to make, then the rest of its data; any other event
shows its type in words and its key fields (see `fields` in functions.py). Every piece of
data passes through the service's escape function, cut so that the whole message stays
within the limits the service documents, whatever the event holds."""

from __future__ import annotations

# Whether an event is an alert, the same in every preset. `has` is only reached for a
# tillhook type, whose data tillhook writes, always a map.
_ALERT = 'type.startsWith("tillhook.") && has(data.summary)'
_CHECK = 'has(data.check) && data.check != ""'
# The message's name: its type in words, marked when an admin sent it to try the endpoint, so
# nobody in the channel takes it for a sale.
_TITLE = '(test ? "[test] " + title(type) : title(type))'
# `[x].map(fs, …)[0]` names a value once, as `cel.bind` would: the Rust CEL has none, and
# every call into a function converts its arguments and result, which costs more than the
# function does.

# Slack incoming webhook: `text` (the notification and fallback) and Block Kit `blocks`
# (docs.slack.dev/reference/block-kit): a header (plain_text, at most 150 characters), section
# blocks (mrkdwn text at most 3000; `fields` at most 10 of at most 2000 each), a context block
# with the time; at most 50 blocks. `verbatim` stops Slack turning plain words into links
# and mentions; slackEscape stops the `<…>` syntax that makes them on purpose.
_SLACK_FIELDS = """
    (size(fs) > 0
     ? [{"type": "section", "fields": fs.map(f, {"type": "mrkdwn", "verbatim": true,
          "text": "*" + slackEscape(f.name, 100) + "*\\n" + slackEscape(f.value, 1000)})}]
     : [])
    + [{"type": "context", "elements": [{"type": "mrkdwn", "verbatim": true,
         "text": slackTime(timestamp) + " · " + slackEscape(type, 200) + " · " + slackEscape(id, 200)}]}]"""
_SLACK_HEADER = f"""
    {{"type": "header", "text": {{"type": "plain_text", "text": truncate({_TITLE}, 150), "emoji": true}}}}"""
SLACK = f"""
{_ALERT}
? [fields(data, ["summary", "check"])].map(fs, {{
    "text": slackEscape((type == "tillhook.endpoint.recovered" ? "✅ " : "⚠️ ") + display(data.summary), 3000),
    "blocks": [{_SLACK_HEADER},
      {{"type": "section", "text": {{"type": "mrkdwn", "verbatim": true,
        "text": "*" + slackEscape(data.summary, 1500) + "*"}}}}
    ]
    + ({_CHECK}
       ? [{{"type": "section", "text": {{"type": "mrkdwn", "text": slackEscape(data.check, 3000), "verbatim": true}}}}]
       : [])
    + {_SLACK_FIELDS}
  }})[0]
: [fields(data)].map(fs, {{
    "text": slackEscape({_TITLE} + (size(fs) > 0 ? ": " + fs.map(f, f.name + " " + f.value).join(" · ") : ""), 3000),
    "blocks": [{_SLACK_HEADER}] + {_SLACK_FIELDS}
  }})[0]
"""

# Discord execute-webhook body (discord.com/developers/docs/resources/webhook#execute-webhook,
# …/resources/message#embed-object-embed-limits): `embeds` (at most 10) of title ≤ 256,
# description ≤ 4096, ≤ 25 fields of name ≤ 256 and value ≤ 1024, footer text ≤ 2048, an
# ISO 8601 `timestamp` (each reader sees it in their own zone), at most 6000 characters in
# all of an embed's text. The cuts below keep one embed under 6000 at worst: 256 + 1603 +
# 10 * (80 + 300) + 200. `allowed_mentions` with an empty `parse` lets nothing in the
# message ping anyone, whatever the text says.
_DISCORD_REST = """
      "fields": fs.map(f, {"name": discordEscape(f.name, 80), "value": discordEscape(f.value, 300), "inline": true}),
      "footer": {"text": truncate(type + " · " + display(id, 64), 200)},
      "timestamp": isoTime(timestamp)"""
DISCORD = f"""
{_ALERT}
? [fields(data, ["summary", "check"])].map(fs, {{
    "allowed_mentions": {{"parse": []}},
    "embeds": [{{
      "title": truncate({_TITLE}, 256),
      "description": "**" + discordEscape(data.summary, 800) + "**"
        + ({_CHECK} ? "\\n" + discordEscape(data.check, 800) : ""),
      "color": type == "tillhook.endpoint.recovered" ? 5763719 : 15105570,{_DISCORD_REST}
    }}]
  }})[0]
: [fields(data)].map(fs, {{
    "allowed_mentions": {{"parse": []}},
    "embeds": [{{
      "title": truncate({_TITLE}, 256),
      "color": 5793266,{_DISCORD_REST}
    }}]
  }})[0]
"""

# Microsoft Teams, a Workflows "post to a channel when a webhook request is received" flow
# or an incoming webhook (learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/
# how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook): a `message` with one
# Adaptive Card 1.4 attachment, TextBlocks and a FactSet of {title, value}. Their text is a
# subset of Markdown, which teamsEscape keeps data out of. Teams takes up to about 28 KB;
# the cuts keep a card under 10 KB.
TEAMS = f"""
[{_ALERT}].map(alert, [fields(data, alert ? ["summary", "check"] : [])].map(fs, {{
  "type": "message",
  "attachments": [{{
    "contentType": "application/vnd.microsoft.card.adaptive",
    "contentUrl": null,
    "content": {{
      "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
      "type": "AdaptiveCard",
      "version": "1.4",
      "body": [
        {{"type": "TextBlock", "text": truncate({_TITLE}, 200), "weight": "Bolder", "size": "Medium", "wrap": true,
          "color": type == "tillhook.endpoint.recovered" ? "Good" : (alert ? "Attention" : "Default")}}
      ]
      + (alert ? [{{"type": "TextBlock", "text": teamsEscape(data.summary, 1000), "weight": "Bolder", "wrap": true}}] : [])
      + (alert && {_CHECK} ? [{{"type": "TextBlock", "text": teamsEscape(data.check, 1000), "wrap": true}}] : [])
      + (size(fs) > 0
         ? [{{"type": "FactSet", "facts": fs.map(f, {{"title": teamsEscape(f.name, 80), "value": teamsEscape(f.value, 300)}})}}]
         : [])
      + [{{"type": "TextBlock", "text": teamsEscape(formatTime(timestamp) + " · " + type + " · " + display(id, 64), 300),
           "isSubtle": true, "size": "Small", "wrap": true}}]
    }}
  }}]
}})[0])[0]
"""

# Google Chat incoming webhook (developers.google.com/workspace/chat/quickstart/webhooks,
# …/chat/format-messages): `{{"text": …}}` in Chat's own markup, *bold* and `code`, which has
# no escape character: googleChatEscape swaps `<`, `>` and backquotes for look-alikes.
# Values are set in `code` so that their own * _ ~ format nothing. The parts are cut to stay
# under 4096 characters in all (150 + 700 + 700 + 10 * (64 + 150 + 8) + 300); the whole is
# cut there too, in case.
GOOGLE_CHAT = f"""
[{_ALERT}].map(alert, {{
  "text": truncate(
    (["*" + googleChatEscape({_TITLE}, 150) + "*"]
     + (alert ? ["*" + googleChatEscape(data.summary, 700) + "*"] : [])
     + (alert && {_CHECK} ? [googleChatEscape(data.check, 700)] : [])
     + fields(data, alert ? ["summary", "check"] : []).map(f,
         "*" + googleChatEscape(f.name, 64) + ":* `" + googleChatEscape(f.value, 150) + "`")
     + [googleChatEscape(formatTime(timestamp) + " · " + type + " · " + display(id, 64), 300)]
    ).join("\\n"),
    4096)
}})[0]
"""

PRESETS: dict[str, str] = {
    "slack": SLACK,
    "discord": DISCORD,
    "teams": TEAMS,
    "google-chat": GOOGLE_CHAT,
}
