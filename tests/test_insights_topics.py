"""Topics: paraphrases of one problem group together, near-vocabulary problems stay apart, labels
separate bugs from requests, new conversations join or start topics, people's decisions survive
re-grouping, customers are counted once, and trending fires on a spike but not on steady volume."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from deskside.insights.analysis.topics import (
    PATTERN_MIN_CUSTOMERS,
    Decisions,
    Item,
    Topic,
    TopicModel,
    TopicSettings,
    trending,
)

START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)

# Each problem paraphrased by different customers, written by hand: varied wording, typos, detail.
PROBLEMS: dict[str, tuple[str, list[str]]] = {
    "export_500": (
        "bug",
        [
            "When I export my contacts to CSV the file only has 500 rows. I have over 2,000 "
            "contacts in the account so most of them are missing.",
            "Export seems broken - the csv I download always stops at exactly 500 lines, no "
            "matter which filter I use.",
            "Hi, our monthly report export is cut off. The CSV ends at row 500 and the remaining "
            "orders aren't there. Can you fix this asap?",
            "exporting to csv only gives me the first 500 records?? we have 3400 customers. is "
            "there a limit on exports",
            "The CSV export is truncated at 500 rows. I tried Chrome and Firefox, same result.",
            "Hello, I need a full export of all my subscribers but the downloaded CSV contains "
            "only 500 of them. Where did the rest go?",
            "Bug report: CSV exports stop after 500 rows. Expected all 1,250 rows of the invoice "
            "list.",
            "our accountant says the export file is incomplete - exactly 500 rows every time we "
            "export transactions to csv",
        ],
    ),
    "import_dates": (
        "bug",
        [
            "I'm trying to import a CSV of my contacts but every row gets rejected with 'invalid "
            "date'. The dates are in DD/MM/YYYY format.",
            "CSV import fails on the date column. It says the date is not recognised even though "
            "it's 2024-03-15.",
            "Importing my spreadsheet doesn't work, the importer rejects all the dates in the "
            "birthday column",
            "Hi, the import keeps throwing 'invalid date format' for rows 2 to 500 of my csv. "
            "What format does it expect?",
            "upload of csv file -> error on every date. tried european and US date formats, both "
            "rejected",
            "Your CSV importer won't accept my dates. I exported them from Excel, format "
            "15.03.2024. Every line fails.",
            "We can't import our customer list: the import rejects the signup date field as "
            "invalid",
            "importing csv: dates rejected ('could not parse date'), the rest of the columns are "
            "fine",
        ],
    ),
    "password_reset": (
        "bug",
        [
            "I requested a password reset three times but the email never arrives. Checked spam "
            "too.",
            "Not receiving the reset password email. I can't log in at all.",
            "forgot my password, clicked reset, nothing in my inbox after an hour",
            "The password reset email isn't coming through - we use gmail, nothing in junk either",
            "Hi, none of my team members get the 'reset your password' mail. Is your email "
            "service down?",
            "I never get the email to reset my pasword. Tried with two different adresses.",
        ],
    ),
    "calendar_duplicates": (
        "bug",
        [
            "Since yesterday the Google Calendar sync creates every appointment twice.",
            "All my bookings show up duplicated in google calendar after syncing",
            "Calendar integration bug: events are copied two or three times into my Google "
            "calendar",
            "Every event is duplicated when it syncs to Google Calendar. I have to delete the "
            "copies by hand each morning.",
            "google cal sync is making duplicate events again, I see 2 of each meeting",
            "Double entries in Google Calendar. Each appointment from your app appears twice "
            "since the last sync.",
        ],
    ),
    "ios_photo_crash": (
        "bug",
        [
            "The iPhone app crashes every time I try to upload a photo.",
            "App closes immediately when I attach a picture from my camera roll on iOS 17",
            "Crash on iPad when uploading an image to a job. Android works fine.",
            "Your iOS app keeps crashing as soon as I pick a photo to upload",
            "uploading pictures in the ios app = instant crash. reinstalled, still happens",
            "When I add a photo on my iPhone the app freezes and then quits",
        ],
    ),
    "scheduled_export": (
        "feature",
        [
            "Could you add scheduled exports? I'd like the CSV of orders emailed to me every "
            "Monday.",
            "Feature request: automatic daily export of our contacts to CSV",
            "It would be great to schedule the export so the csv lands in our Dropbox each night",
            "We export the report every week by hand; can you make exports recurring / scheduled?",
            "Please add an option to automatically export data on a schedule (weekly CSV would "
            "be perfect)",
            "Is it possible to set up a recurring export? Manually downloading the csv every day "
            "is tedious.",
        ],
    ),
    "api_rate_limits": (
        "docs",
        [
            "The API docs don't say what the rate limit is. How many requests per minute can we "
            "make?",
            "What are the API rate limits? I can't find them in the documentation.",
            "Getting 429 Too Many Requests from the API, the docs don't mention any limits",
            "Your API documentation should document the rate limiting headers and limits",
            "How many API calls per second are allowed? Nothing about throttling in the "
            "developer docs.",
        ],
    ),
    # Harder: the same request in different words ("dark theme", "night mode"; "SSO", "single
    # sign-on"). Word overlap groups part of each; they must at least never mix with others.
    "dark_mode": (
        "feature",
        [
            "Any plans for a dark mode? The white screen is really bright at night.",
            "Please add a dark theme, my eyes would thank you",
            "Feature request: dark mode for the web app and the mobile app",
            "Would love a night mode / dark colour scheme option",
            "Could you support dark mode? It's the one thing I miss coming from our old tool",
            "Is a dark theme on the roadmap? Working late with this bright UI hurts.",
        ],
    ),
    "sso": (
        "feature",
        [
            "Do you support single sign-on with Okta? Our IT requires SSO for all tools.",
            "Feature request: SAML SSO login for our company",
            "We need SSO (Azure AD) before we can roll this out to the whole company",
            "Can we log in with our Google Workspace accounts via SSO instead of passwords?",
            "Please add SAML/OIDC single sign on, it's a blocker for our security review",
        ],
    ),
}
GROUPED = [
    "export_500",
    "import_dates",
    "password_reset",
    "calendar_duplicates",
    "ios_photo_crash",
    "scheduled_export",
    "api_rate_limits",
]

# One-offs, some sharing words with the problems above ("export", "import", "invoice", "PDF").
NOISE: list[tuple[str, str]] = [
    ("Thanks, that fixed it!", "other"),
    ("Can I change the billing address on my invoices?", "question"),
    ("What is your refund policy for annual plans?", "question"),
    ("Please cancel my subscription at the end of this month.", "other"),
    ("Do you offer a discount for non-profit organisations?", "question"),
    ("How do I add a new user to my team?", "question"),
    ("Is there a way to change the language to German?", "question"),
    ("Our office is closed next week, just letting you know the delivery can wait.", "other"),
    ("Can you send me last year's invoices as PDF for our tax return?", "question"),
    ("I want to delete my account and all my data (GDPR request).", "other"),
    ("Where do I find my API key?", "question"),
    ("Can we get a quote for 50 seats?", "question"),
    ("The new dashboard looks great, well done!", "other"),
    ("Is my data stored in the EU?", "question"),
    ("How do I export a single invoice to PDF?", "question"),
    ("Can I import contacts from Mailchimp?", "question"),
    ("Why was I charged twice this month?", "bug"),
    ("The invoice PDF shows the wrong VAT number.", "bug"),
    ("Search doesn't find contacts with accents in their name, e.g. Zoë.", "bug"),
    ("Exporting an invoice to PDF puts the old logo on it.", "bug"),
    ("The contacts list sorts by first name even though I chose last name.", "bug"),
    ("Reports page is very slow to load since Tuesday, takes 30 seconds.", "bug"),
    ("Could you add a Zapier integration?", "feature"),
    ("Please let us add custom fields to contacts.", "feature"),
    ("Would be nice to export charts as PNG images.", "feature"),
]


def corpus(seed: int = 0) -> tuple[list[Item], dict[int, str]]:
    """The items (arrival order shuffled by ``seed``, over ~4 weeks) and each one's problem.
    Customers are distinct, except that one customer wrote two of the export reports and one
    export report has no customer."""
    rows = [(key, label, text) for key, (label, texts) in PROBLEMS.items() for text in texts]
    rows += [(f"noise {n}", label, text) for n, (text, label) in enumerate(NOISE)]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    items: list[Item] = []
    truth: dict[int, str] = {}
    for position, index in enumerate(order):
        key, label, text = rows[index]
        conversation_id = 1000 + index
        customer: str | None = f"customer{index}@example.com"
        if index == 7:  # the eighth export report: the first one's customer, writing again
            customer = "Customer0@Example.com "
        if index == 3:
            customer = None
        when = START + timedelta(hours=7 * position)
        items.append(Item(conversation_id, customer, when, text, label))
        truth[conversation_id] = key
    return items, truth


def members(truth: dict[int, str], problem: str) -> set[int]:
    return {conversation for conversation, key in truth.items() if key == problem}


def topic_holding(topics: Iterable[Topic], conversation_id: int) -> Topic:
    return next(t for t in topics if conversation_id in t.conversation_ids)


@pytest.fixture(scope="module")
def fitted() -> tuple[TopicModel, list[Topic], dict[int, str]]:
    items, truth = corpus()
    model = TopicModel()
    return model, model.fit(items), truth


def test_paraphrases_land_in_one_topic_each(
    fitted: tuple[TopicModel, list[Topic], dict[int, str]],
) -> None:
    _, topics, truth = fitted
    by_conversations = {frozenset(t.conversation_ids) for t in topics}
    for problem in GROUPED:
        assert members(truth, problem) in by_conversations, problem


def test_the_two_csv_bugs_stay_apart_in_any_arrival_order() -> None:
    for seed in range(12):
        items, truth = corpus(seed)
        topics = TopicModel().fit(items)
        export, imports = members(truth, "export_500"), members(truth, "import_dates")
        for topic in topics:
            held = set(topic.conversation_ids)
            assert not (held & export and held & imports), (seed, topic.name)
        assert any(set(t.conversation_ids) == export for t in topics), seed
        assert any(set(t.conversation_ids) == imports for t in topics), seed


def test_no_topic_mixes_problems_and_one_offs_are_no_pattern(
    fitted: tuple[TopicModel, list[Topic], dict[int, str]],
) -> None:
    _, topics, truth = fitted
    for topic in topics:
        problems = {truth[c] for c in topic.conversation_ids}
        if any(not p.startswith("noise") for p in problems):
            assert len(problems) == 1, (topic.name, problems)
    for topic in [t for t in topics if t.customers >= PATTERN_MIN_CUSTOMERS]:
        assert not truth[topic.conversation_ids[0]].startswith("noise"), topic.name
    # The harder requests group partly (a pattern of three or more), never with anything else.
    dark_mode = max(
        (t for t in topics if truth[t.conversation_ids[0]] == "dark_mode"),
        key=lambda t: t.conversations,
    )
    assert dark_mode.conversations >= 4


def test_labels_keep_a_bug_and_a_request_about_the_same_screen_apart() -> None:
    items, truth = corpus()
    export_texts = [i for i in items if truth[i.conversation_id] == "export_500"]
    as_requests = [
        Item(5000 + n, f"other{n}@example.com", i.created_at, i.text, "feature")
        for n, i in enumerate(export_texts[:4])
    ]
    model = TopicModel()
    topics = model.fit([*items, *as_requests])
    bug_topic = topic_holding(topics, export_texts[0].conversation_id)
    request_topic = topic_holding(topics, 5000)
    assert bug_topic.id != request_topic.id
    assert bug_topic.label == "bug" and request_topic.label == "feature"
    assert {5000, 5001, 5002, 5003} <= set(request_topic.conversation_ids)
    assert set(bug_topic.conversation_ids) == members(truth, "export_500")
    labels = {i.conversation_id: i.label for i in [*items, *as_requests]}
    for topic in topics:
        assert len({labels[c] for c in topic.conversation_ids}) == 1, topic.name


def test_topics_are_named_by_their_distinctive_terms(
    fitted: tuple[TopicModel, list[Topic], dict[int, str]],
) -> None:
    _, topics, truth = fitted
    export = topic_holding(topics, min(members(truth, "export_500")))
    imports = topic_holding(topics, min(members(truth, "import_dates")))
    calendar = topic_holding(topics, min(members(truth, "calendar_duplicates")))
    assert export.name == " · ".join(export.terms[:2])
    assert "500 rows" in export.terms and any("export" in t for t in export.terms[:2])
    assert any("import" in t for t in imports.terms[:2])
    assert "google calendar" in calendar.terms
    assert not export.named_by_person


def test_counts_are_distinct_customers(
    fitted: tuple[TopicModel, list[Topic], dict[int, str]],
) -> None:
    model, topics, truth = fitted
    items, _ = corpus()
    export = topic_holding(topics, min(members(truth, "export_500")))
    assert export.conversations == 8
    assert export.customers == 7  # one customer wrote twice (case and spaces aside)
    times = [i.created_at for i in items if i.conversation_id in members(truth, "export_500")]
    assert (export.first_seen, export.last_seen) == (min(times), max(times))
    assert export in model.topics(min_customers=7)
    assert export not in model.topics(min_customers=8)
    assert all(t.customers >= PATTERN_MIN_CUSTOMERS for t in model.topics(PATTERN_MIN_CUSTOMERS))


def test_new_conversations_join_their_topic_or_start_one() -> None:
    items, truth = corpus()
    model = TopicModel()
    topics = model.fit(items)
    before = model.memberships()
    export_id = topic_holding(topics, min(members(truth, "export_500"))).id
    import_id = topic_holding(topics, min(members(truth, "import_dates"))).id
    later = START + timedelta(days=40)
    placed = model.assign(
        [
            Item(9001, "late1@example.com", later, "CSV export stops at 500 rows again", "bug"),
            Item(
                9002,
                "late2@example.com",
                later + timedelta(minutes=5),
                "the csv import rejects every date in my file as invalid",
                "bug",
            ),
            Item(
                9003,
                "late3@example.com",
                later + timedelta(minutes=9),
                "Our Zapier zap stopped sending new leads to HubSpot overnight",
                "bug",
            ),
        ]
    )
    assert placed[9001] == export_id
    assert placed[9002] == import_id
    assert placed[9003] not in set(before.values())
    assert all(model.memberships()[c] == t for c, t in before.items())  # nothing else moved
    # A second report of the new problem joins the topic the first one started.
    again = model.assign(
        [Item(9004, "late4@example.com", later, "zapier zap not sending leads to hubspot", "bug")]
    )
    assert again[9004] == placed[9003]
    # Known conversations keep their topic.
    assert model.assign(items[:3]) == {
        i.conversation_id: before[i.conversation_id] for i in items[:3]
    }


def test_refitting_keeps_topics_and_their_ids() -> None:
    items, _ = corpus()
    model = TopicModel()
    model.fit(items)
    before = model.memberships()
    sizes: dict[int, int] = {}
    for topic in before.values():
        sizes[topic] = sizes.get(topic, 0) + 1
    model.fit(items)
    after = model.memberships()
    for conversation, topic in before.items():
        if sizes[topic] >= 2:
            assert after[conversation] == topic
    # Rebuilt from the stored memberships alone (no saved model), the same.
    rebuilt = TopicModel()
    rebuilt.fit(items, previous=after)
    assert rebuilt.memberships() == after


def test_ids_stored_before_are_never_given_to_new_topics() -> None:
    items, _ = corpus()
    model = TopicModel()
    model.reserve_ids(500)  # topics 1-499 exist in the store, now without conversations
    model.fit(items)
    assert min(model.memberships().values()) >= 500
    later = START + timedelta(days=40)
    new = Item(9001, "late@example.com", later, "Zapier stopped sending leads to HubSpot", "bug")
    assert model.assign([new])[9001] >= 500


def test_decisions_stick_across_regrouping_and_assignment() -> None:
    items, truth = corpus()
    model = TopicModel()
    topics = model.fit(items)
    export = topic_holding(topics, min(members(truth, "export_500")))
    imports = topic_holding(topics, min(members(truth, "import_dates")))
    calendar = topic_holding(topics, min(members(truth, "calendar_duplicates")))

    # Split: two export reports moved to a topic of their own; merge: calendar into import (a
    # person's call, however odd); rename: the export topic.
    split_off = sorted(export.conversation_ids)[:2]
    new_id = model.new_topic_id()
    decisions = Decisions(
        merged={calendar.id: imports.id},
        pinned=dict.fromkeys(split_off, new_id),
        names={export.id: "CSV export limit"},
    )
    model.apply(decisions)
    for rerun in (False, True):
        if rerun:
            model.fit(items)  # re-grouping from the texts: decisions still hold
        grouped = {t.id: t for t in model.topics()}
        assert set(grouped[new_id].conversation_ids) == set(split_off)
        assert set(grouped[export.id].conversation_ids) == set(export.conversation_ids) - set(
            split_off
        )
        assert grouped[export.id].name == "CSV export limit"
        assert grouped[export.id].named_by_person
        assert set(grouped[imports.id].conversation_ids) == set(imports.conversation_ids) | set(
            calendar.conversation_ids
        )
        assert calendar.id not in grouped

    # A new calendar report lands in the survivor of the merge.
    report = Item(
        9100,
        "cal@example.com",
        START + timedelta(days=50),
        "google calendar sync duplicates every appointment",
        "bug",
    )
    assert model.assign([report]) == {9100: imports.id}
    # A fresh model given the decisions and the stored memberships ends the same.
    rebuilt = TopicModel()
    rebuilt.fit([*items, report], decisions, model.memberships())
    assert rebuilt.memberships() == model.memberships()


def test_a_pin_waits_for_its_conversation_and_merges_follow_chains() -> None:
    items, truth = corpus()
    model = TopicModel()
    topics = model.fit(items)
    export = topic_holding(topics, min(members(truth, "export_500")))
    imports = topic_holding(topics, min(members(truth, "import_dates")))
    calendar = topic_holding(topics, min(members(truth, "calendar_duplicates")))
    target = model.new_topic_id()
    assert target > max(t.id for t in topics)
    decisions = Decisions(
        merged={calendar.id: imports.id, imports.id: export.id},  # calendar → import → export
        pinned={9300: target},  # a person filed it before it arrived
    )
    placed = model.assign(
        [Item(9300, None, START + timedelta(days=45), "calendar sync doubles events", "bug")],
        decisions,
    )
    assert placed == {9300: target}
    grouped = {t.id: t for t in model.topics()}
    assert calendar.id not in grouped and imports.id not in grouped
    assert set(grouped[export.id].conversation_ids) == set(export.conversation_ids) | set(
        imports.conversation_ids
    ) | set(calendar.conversation_ids)
    # A merge cycle ends in one topic, its smallest id.
    model.apply(Decisions(merged={export.id: calendar.id, calendar.id: export.id}))
    survivor = min(export.id, calendar.id)
    assert {model.topic_of(c) for c in members(truth, "export_500")} == {survivor}


def test_the_state_survives_saving_and_loading(
    fitted: tuple[TopicModel, list[Topic], dict[int, str]],
) -> None:
    model, topics, _ = fitted
    loaded = TopicModel.from_bytes(model.to_bytes())
    assert loaded.memberships() == model.memberships()
    assert loaded.topics() == topics
    assert loaded.settings == model.settings
    new = [Item(9200, None, START + timedelta(days=60), "csv export cut off at 500 rows", "bug")]
    assert loaded.assign(new) == TopicModel.from_bytes(model.to_bytes()).assign(new)
    with pytest.raises(ValueError, match="format"):
        TopicModel.from_bytes(_with_version(model.to_bytes(), 99))


def _with_version(state: bytes, version: int) -> bytes:
    with np.load(io.BytesIO(state), allow_pickle=False) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    meta = json.loads(str(contents["meta"]))
    meta["version"] = version
    contents["meta"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **contents)
    return buffer.getvalue()


def test_grouping_is_deterministic_and_settings_apply() -> None:
    items, _ = corpus()
    assert TopicModel().fit(items) == TopicModel().fit(items)
    strict = TopicModel(TopicSettings(join_similarity=0.9, pair_similarity=0.9))
    assert all(t.conversations == 1 for t in strict.fit(items))


def test_input_errors() -> None:
    items, _ = corpus()
    with pytest.raises(ValueError, match="twice"):
        TopicModel().fit([items[0], items[0]])
    naive = Item(1, None, datetime(2027, 1, 1), "text", "bug")
    with pytest.raises(ValueError, match="naive"):
        TopicModel().fit([naive])
    assert TopicModel().fit([]) == []


# --- Trending -------------------------------------------------------------------------------

NOW = datetime(2027, 3, 1, tzinfo=UTC)


def spread(count: int, start: datetime, days: float) -> list[datetime]:
    """``count`` moments spread evenly over ``days`` from ``start``."""
    return [start + timedelta(days=days * (n + 0.5) / count) for n in range(count)]


def inflow(per_week_before: int, recent: int) -> list[datetime]:
    return [
        *spread(per_week_before * 6, NOW - timedelta(days=49), 42),
        *spread(recent, NOW - timedelta(days=7), 7),
    ]


def customers_at(moments: list[datetime], prefix: str) -> list[tuple[datetime, str]]:
    return [(moment, f"{prefix}{n}") for n, moment in enumerate(moments)]


def test_a_spike_is_trending() -> None:
    topic = customers_at(
        [*spread(12, NOW - timedelta(days=49), 42), *spread(15, NOW - timedelta(days=7), 7)], "c"
    )
    trend = trending(topic, inflow(100, 100), NOW)
    assert trend.trending
    assert trend.recent_customers == 15 and trend.baseline_customers == 12
    assert trend.p_value < 1e-6 and trend.lift > 5 and trend.score > 6
    assert trend.explanation.startswith("15 customers in the last 7 days vs 2.0/week before")


def test_steady_volume_is_not_trending_even_as_inflow_grows() -> None:
    steady = [*spread(60, NOW - timedelta(days=49), 42), *spread(10, NOW - timedelta(days=7), 7)]
    assert not trending(customers_at(steady, "c"), inflow(100, 100), NOW).trending
    growing = [*spread(60, NOW - timedelta(days=49), 42), *spread(20, NOW - timedelta(days=7), 7)]
    trend = trending(customers_at(growing, "c"), inflow(100, 200), NOW)
    assert not trend.trending and 0.8 < trend.lift < 1.2


def test_new_topics_need_several_customers_to_trend() -> None:
    recent = spread(5, NOW - timedelta(days=7), 7)
    assert not trending(customers_at(recent[:1], "c"), inflow(100, 100), NOW).trending
    assert not trending(customers_at(recent[:2], "c"), inflow(100, 100), NOW).trending
    assert trending(customers_at(recent, "c"), inflow(100, 100), NOW).trending
    # One customer writing ten times is one customer.
    repeated = [(moment, "same@example.com") for moment in spread(10, NOW - timedelta(days=7), 7)]
    assert not trending(repeated, inflow(100, 100), NOW).trending
    # Without a history, nothing is surprising.
    assert not trending(
        customers_at(recent, "c"), spread(100, NOW - timedelta(days=7), 7), NOW
    ).trending


def test_the_model_reports_trends_on_its_own_conversations() -> None:
    items, truth = corpus()
    shift = NOW - timedelta(days=48) - START  # the corpus spans 27 days: all in the baseline
    base = [
        Item(i.conversation_id, i.customer, i.created_at + shift, i.text, i.label) for i in items
    ]
    spike = [
        Item(
            8000 + n,
            f"spike{n}@example.com",
            NOW - timedelta(days=6) + timedelta(hours=5 * n),
            text,
            "bug",
        )
        for n, text in enumerate(
            [
                "csv export stops at 500 rows",
                "export to csv truncated after 500 rows",
                "our csv export only has 500 rows",
                "the csv export is cut off at 500 lines",
                "exporting csv stops at row 500",
                "csv export gives only 500 rows of 3000",
            ]
        )
    ]
    model = TopicModel()
    topics = model.fit([*base, *spike])
    export = topic_holding(topics, min(members(truth, "export_500")))
    assert {8000, 8001, 8002, 8003, 8004, 8005} <= set(export.conversation_ids)
    trend = model.trend(export.id, NOW)
    assert trend.trending and trend.recent_customers == 6
    calendar = topic_holding(topics, min(members(truth, "calendar_duplicates")))
    assert not model.trend(calendar.id, NOW).trending
