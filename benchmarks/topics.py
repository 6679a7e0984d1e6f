"""How fast and how well the topics engine groups a help desk's worth of messages:

    .venv/bin/python benchmarks/topics.py [--messages 50000] [--more 1000] [--seed 7]

It generates messages about 144 problems: on each of 24 things (CSV export, invoice PDFs, the iOS
app, …) four failures (bugs: "stops at 500 rows", "server error", …) and two requests (features:
"bulk editing", "Excel download", …), each put several ways, most with the problem's own trigger
("when I archive a client") or purpose ("our auditors need it for the quarterly audit"). Around
the core: openers, names, companies and references, side remarks (browser, plan, …), closings
and the odd typo; ~12,000 customers over 60 days; 12% are questions from a short list. Problems
share words on purpose: the same failure on different things is put in the same words. Three
problems get a spike in the last week.

It times :meth:`TopicModel.fit` over the first messages (the budget: 60 s for 50,000) and
:meth:`TopicModel.assign` of the later ones, then scores the topics against the generator's
truth: homogeneity / completeness (scikit-learn), the purity of patterns (topics of three or more
customers) and how many of them merge two problems, how scattered each problem is, where assigned
messages went, whether the spikes (and nothing else) trend, and the size and speed of the saved
state. Prints a summary and writes ``benchmarks/results/topics.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sklearn.metrics import homogeneity_completeness_v_measure

from deskside.insights.analysis.topics import PATTERN_MIN_CUSTOMERS, Item, TopicModel

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "topics.json"
BUDGET_SECONDS = 60.0
DAYS = 60
NOW = datetime(2027, 3, 1, tzinfo=UTC)

# The things customers write about, each in several phrasings.
THINGS: dict[str, list[str]] = {
    "csv export": ["the CSV export", "exporting to CSV", "the export to csv", "the export file"],
    "csv import": [
        "the CSV import",
        "importing a CSV",
        "the csv importer",
        "the spreadsheet import",
    ],
    "invoice pdf": ["the invoice PDF", "PDF invoices", "invoice PDFs", "the PDF of an invoice"],
    "calendar sync": [
        "the Google Calendar sync",
        "calendar sync",
        "syncing with Google Calendar",
        "the calendar integration",
    ],
    "ios app": ["the iPhone app", "the iOS app", "the app on my iPhone", "the iPad app"],
    "android app": ["the Android app", "the app on Android", "the android version", "android"],
    "login": ["the login page", "logging in", "the login screen", "login"],
    "password reset": [
        "the password reset email",
        "the reset password link",
        "password reset",
        "resetting my password",
    ],
    "notifications": ["email notifications", "notification emails", "notifications"],
    "reports": ["the monthly report", "the reports page", "reports", "the report view"],
    "search": ["search", "the search bar", "searching", "search results"],
    "webhooks": ["webhooks", "webhook delivery", "our webhook", "the webhooks"],
    "api": ["the REST API", "the API", "API calls", "the api"],
    "zapier": ["the Zapier integration", "our zap", "Zapier", "the zapier trigger"],
    "slack": ["the Slack integration", "slack notifications", "Slack", "the slack app"],
    "billing": ["the billing page", "billing", "the billing settings", "billing and payment"],
    "team": ["inviting team members", "team invitations", "the team page", "adding team members"],
    "permissions": ["user permissions", "permissions", "the permissions page", "role permissions"],
    "tags": ["tags", "tagging", "contact tags", "the tags list"],
    "custom fields": [
        "custom fields",
        "custom field values",
        "the custom fields",
        "a custom field",
    ],
    "attachments": ["attachments", "file attachments", "attaching files", "the attachments"],
    "templates": ["email templates", "the template editor", "templates", "saved templates"],
    "booking page": ["the booking page", "online booking", "the booking form", "booking"],
    "timesheets": ["timesheets", "the timesheet", "timesheet entries", "the timesheets page"],
}

# How each failure is put; the variants of one failure mostly share its key word, as reports of
# one bug do (the same symptom), while different failures on one thing share the thing's words.
FAILURES: dict[str, list[str]] = {
    "stops at 500 rows": [
        "stops at 500 rows",
        "is cut off at 500 rows",
        "only has the first 500 rows",
        "stops after 500 lines",
    ],
    "rejects dates": [
        "rejects the dates",
        "rejects dates as invalid",
        "says invalid date format",
        "fails on dates",
    ],
    "crashes": ["crashes", "keeps crashing", "crashes and closes", "crashed again"],
    "duplicates": [
        "creates duplicates",
        "duplicates every entry",
        "makes duplicate entries",
        "shows duplicates",
    ],
    "slow": ["is extremely slow", "is very slow to load", "has become slow", "is so slow"],
    "server error": [
        "gives an error 500",
        "shows a server error",
        "throws error 500",
        "fails with a server error",
    ],
    "wrong totals": [
        "shows wrong totals",
        "has the wrong total",
        "calculates totals wrong",
        "gets the totals wrong",
    ],
    "never arrives": ["never arrives", "doesn't arrive", "never arrives in my inbox", "never came"],
    "broken accents": [
        "garbles accented characters",
        "breaks accented characters",
        "mangles accents like é",
        "shows broken accents",
    ],
    "wrong time zone": [
        "shows the wrong time zone",
        "uses the wrong time zone",
        "ignores my time zone",
        "is in the wrong timezone",
    ],
    "missing entries": [
        "is missing entries",
        "has missing entries",
        "doesn't show all entries",
        "loses entries",
    ],
    "blank page": ["is blank", "shows a blank page", "loads a blank white page", "stays blank"],
    "logs out": ["logs me out", "keeps logging me out", "logs everyone out", "logged me out again"],
}

REQUESTS: dict[str, list[str]] = {
    "bulk edit": [
        "bulk editing for {thing}",
        "editing many {thing} at once",
        "bulk actions in {thing}",
    ],
    "schedule": ["scheduled {thing}", "{thing} on a schedule", "recurring {thing} every week"],
    "excel": [
        "{thing} as an Excel file",
        "an xlsx download of {thing}",
        "excel format for {thing}",
    ],
    "filters": [
        "more filters in {thing}",
        "filtering {thing} by date range",
        "saved filters for {thing}",
    ],
    "read only": [
        "read-only access to {thing}",
        "restricting who sees {thing}",
        "a viewer role for {thing}",
    ],
}

# What the customer was doing when it happened (a bug) or what they need it for (a feature):
# a different verb + object (or who + what) for every problem, from parts that many share.
VERBS = [
    "open",
    "edit",
    "delete",
    "rename",
    "share",
    "archive",
    "copy",
    "move",
    "print",
    "sort",
    "star",
    "restore",
    "reorder",
    "assign",
    "pin",
    "close",
    "approve",
    "split",
    "link",
    "review",
]
OBJECTS = [
    "a contact",
    "an old invoice",
    "a recurring job",
    "a draft",
    "a big project",
    "a client folder",
    "an archived order",
    "a shared calendar",
    "a team note",
    "a price list",
    "a vendor",
    "a product variant",
    "a location",
    "a shift",
    "a quote",
    "a supplier",
    "a receipt",
    "a lead",
    "a coupon",
    "a warehouse",
    "a booking slot",
    "a subscription",
    "a checklist",
    "a signature",
    "a department",
]
TRIGGER_FORMS = [
    "when I {t}",
    "whenever we {t}",
    "right after I {t}",
    "every time I {t}",
    "if I {t}",
]
WHO = [
    "our accountant",
    "the sales team",
    "our auditors",
    "head office",
    "our franchise owners",
    "the warehouse staff",
    "our interns",
    "legal",
    "the board",
    "our managers",
    "contractors",
    "our clients",
]
WHAT = [
    "the monthly close",
    "payroll",
    "the quarterly audit",
    "weekly forecasts",
    "tax filing",
    "stock counts",
    "commission reports",
    "client reviews",
    "shift planning",
    "grant reporting",
    "insurance claims",
    "the annual budget",
    "customs paperwork",
    "safety inspections",
    "supplier ratings",
]
PURPOSE_FORMS = ["because {p}", "since {p}", "- {p}", "as {p}"]

OPENERS = ["", "", "Hi,", "Hello,", "Hey team,", "Good morning,", "Hi there -", "Dear support,"]
# Side remarks, assembled from parts so that no one remark is in more than a few percent of
# messages (real customers mention their browser or plan, but not in one fixed sentence).
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Brave", "Opera"]
SYSTEMS = ["Windows 11", "Windows 10", "macOS Sonoma", "macOS Ventura", "Ubuntu", "a Chromebook"]
REMARKS = [
    "Using {browser} on {system}.",
    "Same in {browser}.",
    "I'm on {system} with {browser}.",
    "Tried {browser} too, no difference.",
    "We have about {n} {people} in the account.",
    "Our {n} {people} depend on this.",
    "We switched to you from {rival} in {month}.",
    "It worked fine until {month}.",
    "Started after the {month} update.",
    "We're on the {plan} plan.",
    "Cleared the cache in {browser}, no change.",
    "Logged out and back in on {system}, same thing.",
    "Tried it on {system} as well.",
    "My colleague in {city} sees it too.",
]
PEOPLE = ["customers", "clients", "staff", "members", "students", "patients", "drivers"]
RIVALS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August"]
PLANS = ["Pro", "Starter", "Business", "Enterprise", "Team"]
CITIES = ["Berlin", "Lyon", "Leeds", "Austin", "Porto", "Gdansk", "Osaka", "Cork"]
# Who is writing and about which of their records: names, companies and references make real
# messages lexically diverse (without them every cosine in the corpus would be about twice as
# high as between hand-written messages).
FIRST_NAMES = [
    "Maria",
    "Tom",
    "Aisha",
    "Jonas",
    "Priya",
    "Lukas",
    "Chen",
    "Sofia",
    "Mateo",
    "Hannah",
    "Omar",
    "Elif",
    "Noah",
    "Yuki",
    "Grace",
    "Ivan",
    "Lena",
    "Kwame",
    "Zoe",
    "Pedro",
]
SYLLABLES = [
    "bren",
    "lo",
    "ta",
    "vix",
    "mor",
    "den",
    "qua",
    "rel",
    "sto",
    "nik",
    "pal",
    "ver",
    "zu",
    "ka",
    "lin",
    "dor",
    "fen",
    "gra",
    "hol",
    "jas",
    "mi",
    "nor",
    "pe",
    "ru",
    "sal",
    "tor",
]
BUSINESSES = [
    "Bakery",
    "Logistics",
    "Dental",
    "Studio",
    "Consulting",
    "Plumbing",
    "Yoga",
    "Tutoring",
    "Catering",
    "Architects",
    "Vet Clinic",
    "Bikes",
    "Florist",
    "Law",
    "Cleaning",
    "Print Shop",
]


def pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice([2, 3]))).title()


def who_and_what(rng: random.Random) -> str:
    """An introduction or a reference to one of the customer's own records."""
    return rng.choice(
        [
            "This is {name} from {company} {business}.",
            "{name} at {company} {business} here.",
            "For example the one for {client} (ref {code}).",
            "Our client {client} noticed it first.",
            "Affected: {client}, {client2} and a few others.",
            "See account {company} {business}, ref {code}.",
        ]
    ).format(
        name=rng.choice(FIRST_NAMES),
        company=pseudo_word(rng),
        business=rng.choice(BUSINESSES),
        client=pseudo_word(rng),
        client2=pseudo_word(rng),
        code=f"{rng.choice('ABCDEFGHKMNPRSTX')}{rng.randrange(100, 9999)}",
    )


CLOSINGS = ["", "", "Can you help?", "Please fix.", "Thanks!", "Any idea?", "This blocks our team."]
ONE_OFFS = [
    "Can I change the billing address on my invoices?",
    "What is your refund policy for annual plans?",
    "Please cancel my subscription at the end of the month.",
    "Do you offer a discount for non-profit organisations?",
    "Is there a way to change the language to German?",
    "Who is my account manager?",
    "I want to delete my account and all my data.",
    "Where do I find my API key?",
    "Can we get a quote for 50 seats?",
    "The new dashboard looks great, well done!",
    "Is my data stored in the EU?",
    "Thanks, that fixed it!",
    "Our office is closed next week.",
    "Can you send me last year's invoices for our tax return?",
    "How do I upgrade to the yearly plan?",
    "Do you have a partner programme?",
    "Can I transfer the account to my colleague?",
    "What are your support hours?",
    "We are evaluating you against a competitor, can we talk?",
    "Is there a student discount?",
    "Where can I see my usage this month?",
    "Do you sign a DPA?",
    "I was charged in the wrong currency.",
    "Can I pay by bank transfer?",
]


@dataclass(frozen=True)
class Problem:
    key: str
    label: str
    things: list[str]
    phrasings: list[str]
    detail: str
    """A bug's trigger or a request's purpose (one per problem)."""


def problems(rng: random.Random) -> list[Problem]:
    """Four failures and two requests on every thing (different ones on different things), each
    with its own trigger or purpose, in random order."""
    triggers = [f"{verb} {obj}" for verb in VERBS for obj in OBJECTS]
    purposes = [f"{who} need it for {what}" for who in WHO for what in WHAT]
    rng.shuffle(triggers)
    rng.shuffle(purposes)
    found = []
    for thing, phrasings in THINGS.items():
        for failure in rng.sample(sorted(FAILURES), 4):
            key = f"{thing} / {failure}"
            found.append(Problem(key, "bug", phrasings, FAILURES[failure], triggers.pop()))
        for request in rng.sample(sorted(REQUESTS), 2):
            key = f"{thing} / {request}"
            found.append(Problem(key, "feature", phrasings, REQUESTS[request], purposes.pop()))
    rng.shuffle(found)
    return found


def typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    word = words[i]
    j = rng.randrange(len(word) - 1)
    words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def remark(rng: random.Random) -> str:
    return rng.choice(REMARKS).format(
        browser=rng.choice(BROWSERS),
        system=rng.choice(SYSTEMS),
        n=rng.choice([12, 40, 300, 2000, 3400, 75, 600]),
        people=rng.choice(PEOPLE),
        rival=rng.choice(RIVALS),
        month=rng.choice(MONTHS),
        plan=rng.choice(PLANS),
        city=rng.choice(CITIES),
    )


def message(problem: Problem, rng: random.Random) -> str:
    thing = rng.choice(problem.things)
    phrasing = rng.choice(problem.phrasings)
    if problem.label == "bug":
        detail = rng.choice(TRIGGER_FORMS).format(t=problem.detail) if rng.random() < 0.7 else ""
        core = rng.choice(
            [
                f"{thing} {phrasing} {detail}",
                f"{detail}, {thing} {phrasing}" if detail else f"{thing} {phrasing}",
                f"problem with {thing}: it {phrasing} {detail}",
            ]
        )
    else:
        detail = rng.choice(PURPOSE_FORMS).format(p=problem.detail) if rng.random() < 0.7 else ""
        request = phrasing.format(thing=thing)
        core = rng.choice(
            [
                f"could you add {request}? {detail}",
                f"we would love {request} {detail}",
                f"is {request} on the roadmap? {detail}",
            ]
        )
    core = core.strip(" ,")
    parts = [
        rng.choice(OPENERS),
        who_and_what(rng) if rng.random() < 0.6 else "",
        remark(rng) if rng.random() < 0.4 else "",
        core[0].upper() + core[1:] + rng.choice([".", "!", "", " :(", "."]),
        remark(rng) if rng.random() < 0.3 else "",
        rng.choice(CLOSINGS),
    ]
    text = " ".join(p for p in parts if p)
    return typo(text, rng) if rng.random() < 0.15 else text


def generate(count: int, seed: int) -> tuple[list[Item], dict[int, str], list[str]]:
    """``count`` items, each one's true problem, and the problems given a spike in the last week."""
    rng = random.Random(seed)
    catalogue = problems(rng)
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(catalogue))]
    spiking = [p.key for p in catalogue[30:33]]  # mid-sized problems, so a spike stands out
    spike_start = (DAYS - 7) * 86_400
    items: list[Item] = []
    truth: dict[int, str] = {}
    for n in range(count):
        conversation_id = 1_000_000 + n
        customer = f"customer{int(rng.paretovariate(1.2) * 997) % 12_000}@example.com"
        when = NOW - timedelta(days=DAYS) + timedelta(seconds=rng.randrange(DAYS * 86_400))
        if rng.random() < 0.12:
            question = rng.randrange(len(ONE_OFFS))
            opener = rng.choice(OPENERS)
            text = f"{opener} {ONE_OFFS[question]}" if opener else ONE_OFFS[question]
            items.append(Item(conversation_id, customer, when, text, "question"))
            truth[conversation_id] = f"question {question}"
            continue
        if rng.random() < 0.006:  # the spikes: ~100 extra messages each in the last week
            spike = rng.choice(spiking)
            problem = next(p for p in catalogue if p.key == spike)
            when = NOW - timedelta(days=DAYS) + timedelta(seconds=spike_start)
            when += timedelta(seconds=rng.randrange(7 * 86_400 - 1))
        else:
            problem = rng.choices(catalogue, weights)[0]
        items.append(Item(conversation_id, customer, when, message(problem, rng), problem.label))
        truth[conversation_id] = problem.key
    return items, truth, spiking


def quality(model: TopicModel, truth: dict[int, str]) -> dict[str, Any]:
    """How the topics compare with the truth. A pattern *merges* problems when a second problem
    has 10% or more of its conversations; it has *strays* when one has two or more but less."""
    memberships = model.memberships()
    ids = sorted(memberships)
    homogeneity, completeness, v_measure = homogeneity_completeness_v_measure(
        [truth[i] for i in ids], [memberships[i] for i in ids]
    )
    patterns = model.topics(min_customers=PATTERN_MIN_CUSTOMERS)
    merging, with_strays = [], 0
    in_patterns = majority_total = 0
    for topic in patterns:
        counts = Counter(truth[c] for c in topic.conversation_ids).most_common()
        in_patterns += topic.conversations
        majority_total += counts[0][1]
        second = counts[1][1] if len(counts) > 1 else 0
        if second >= max(2, 0.1 * topic.conversations):
            merging.append({"topic": topic.name, "problems": dict(counts[:4])})
        elif second >= 2:
            with_strays += 1
    by_problem: dict[str, Counter[int]] = defaultdict(Counter)
    for conversation, topic in memberships.items():
        by_problem[truth[conversation]][topic] += 1
    sizable = {p: c for p, c in by_problem.items() if sum(c.values()) >= 20}
    largest_share = sorted(c.most_common(1)[0][1] / sum(c.values()) for c in sizable.values())
    return {
        "homogeneity": round(homogeneity, 4),
        "completeness": round(completeness, 4),
        "v_measure": round(v_measure, 4),
        "topics": len(set(memberships.values())),
        "patterns": len(patterns),
        "pattern_purity": round(majority_total / max(in_patterns, 1), 4),
        "patterns_merging_problems": len(merging),
        "patterns_with_strays": with_strays,
        "merging_examples": merging[:6],
        "problems_with_20_plus": len(sizable),
        "largest_topic_share_median": round(largest_share[len(largest_share) // 2], 4),
        "largest_topic_share_p10": round(largest_share[len(largest_share) // 10], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--more", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    items, truth, spiking = generate(args.messages + args.more, args.seed)
    items.sort(key=lambda i: i.created_at)
    first, later = items[: -args.more], items[-args.more :]

    model = TopicModel()
    started = time.perf_counter()
    model.fit(first)
    fit_seconds = time.perf_counter() - started
    fitted = quality(model, truth)

    before = model.memberships()
    majority = {
        topic: Counter(truth[c] for c in members).most_common(1)[0][0]
        for topic, members in _members(before).items()
    }
    started = time.perf_counter()
    placed = model.assign(later)
    assign_seconds = time.perf_counter() - started
    joined_right = joined_wrong = started_new = 0
    for conversation, topic in placed.items():
        if topic not in majority:
            started_new += 1
        elif majority[topic] == truth[conversation]:
            joined_right += 1
        else:
            joined_wrong += 1

    started = time.perf_counter()
    state = model.to_bytes()
    save_seconds = time.perf_counter() - started
    started = time.perf_counter()
    TopicModel.from_bytes(state)
    load_seconds = time.perf_counter() - started

    started = time.perf_counter()
    trending_found = []
    for topic in model.topics(min_customers=PATTERN_MIN_CUSTOMERS):
        trend = model.trend(topic.id, NOW)
        if trend.trending:
            problem = Counter(truth[c] for c in topic.conversation_ids).most_common(1)[0][0]
            trending_found.append(
                {"topic": topic.name, "problem": problem, "why": trend.explanation}
            )
    report_seconds = time.perf_counter() - started
    spikes_found = len({t["problem"] for t in trending_found} & set(spiking))
    result = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "messages": len(first),
        "fit_seconds": round(fit_seconds, 2),
        "budget_seconds": BUDGET_SECONDS,
        "within_budget": fit_seconds <= BUDGET_SECONDS,
        "assign": {
            "messages": len(later),
            "seconds": round(assign_seconds, 3),
            "joined_right_topic": joined_right,
            "joined_wrong_topic": joined_wrong,
            "started_new_topic": started_new,
        },
        "persistence": {
            "bytes": len(state),
            "save_seconds": round(save_seconds, 2),
            "load_seconds": round(load_seconds, 2),
        },
        "patterns_and_trends_seconds": round(report_seconds, 2),
        "quality": fitted,
        "trending": {
            "spiking_problems": spiking,
            "spikes_found": spikes_found,
            "other_trending_topics": [t for t in trending_found if t["problem"] not in spiking],
            "found": trending_found,
        },
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"fit {len(first):,} messages: {fit_seconds:.1f} s (budget {BUDGET_SECONDS:.0f} s); "
        f"assign {len(later):,}: {assign_seconds:.2f} s"
    )
    print(
        f"homogeneity {fitted['homogeneity']:.3f}, completeness {fitted['completeness']:.3f}; "
        f"{fitted['patterns']} patterns, purity {fitted['pattern_purity']:.3f}: "
        f"{fitted['patterns_merging_problems']} merge problems (a second one >= 10%), "
        f"{fitted['patterns_with_strays']} have strays"
    )
    print(
        f"problems with 20+ messages: median share in their largest topic "
        f"{fitted['largest_topic_share_median']:.2f} (10th percentile "
        f"{fitted['largest_topic_share_p10']:.2f})"
    )
    print(
        f"assigned: {joined_right} joined the right topic, {joined_wrong} a wrong one, "
        f"{started_new} started a topic"
    )
    print(
        f"trending: {spikes_found}/{len(spiking)} spikes found, "
        f"{len(result['trending']['other_trending_topics'])} other topics flagged"
    )
    print(
        f"state {len(state) / 1e6:.1f} MB, saved in {save_seconds:.2f} s, loaded in "
        f"{load_seconds:.2f} s; patterns and trends listed in {report_seconds:.2f} s"
    )
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")


def _members(memberships: dict[int, int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for conversation, topic in memberships.items():
        members[topic].append(conversation)
    return members


if __name__ == "__main__":
    main()
