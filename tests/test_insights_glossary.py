"""The classifier's glossary: a message in another language shares the features of the English
examples that ask the same thing (its effect on accuracy is measured by
``benchmarks/classify.py --dev``)."""

from __future__ import annotations

import pytest

from deskside.insights.analysis.glossary import glossed


def glosses(text: str) -> set[str]:
    lowered, _, added = glossed(text).partition("\n")
    assert lowered == text.lower()
    return {gloss for gloss in GLOSSES if gloss in added}


GLOSSES = ("could you", "add", "doesn't work broken", "since the update", "is there",
           "documentation guide article", "error", "how can i", "thanks", "out of office",
           "i would like", "invoice")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Könnten Sie einen Dunkelmodus einbauen?", {"could you", "add"}),
        ("¿Podrían añadir la opción de pagar con dos tarjetas?", {"could you", "add"}),
        ("O app não funciona desde a atualização", {"doesn't work broken", "since the update"}),
        ("Czy jest instrukcja dla kierowców?", {"is there", "documentation guide article"}),
        ("Ricevo un errore quando salvo la fattura", {"error", "invoice"}),
        ("Comment faire pour exporter mes données ? Merci", {"how can i", "thanks"}),
        ("Ik wil graag een extra gebruiker toevoegen", {"i would like", "add"}),
        ("Estoy de vacaciones hasta el día 20.", {"out of office"}),
        ("Exporten fungerar inte sedan uppdateringen", {"doesn't work broken", "since the update"}),
        ("Findes der en vejledning til lønkørsel?", {"is there", "documentation guide article"}),
        ("Kunne dere legge til en mørk modus?", {"could you", "add"}),
        ("Miten voin viedä laskut? Kiitos!", {"how can i", "invoice", "thanks"}),
        ("Chtěl bych přidat dalšího uživatele", {"i would like", "add"}),
        ("Kaydederken hata alıyorum, faturalar çalışmıyor",  # noqa: RUF001 (Turkish)
         {"error", "invoice", "doesn't work broken"}),
    ],
)  # fmt: skip
def test_phrases_in_other_languages_get_their_english_gloss(text: str, expected: set[str]) -> None:
    assert glosses(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Could you add a dark mode? Thanks!",
        "The export doesn't work since the update, error 500 on every invoice.",
        "Is there a guide on how to set up SSO? I would like to read it first.",
        "I'm out of office until Monday.",
        "Where can I find the pricing page? We still have a question about the help center.",
    ],
)
def test_english_text_is_not_glossed(text: str) -> None:
    assert glossed(text) == text.lower()
