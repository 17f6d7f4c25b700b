"""Invoice PDFs: small but real documents (fpdf2), so 'download the PDF' can be tested end to end."""

from __future__ import annotations

import datetime as dt

from fpdf import FPDF

from .billing import money


def _date(ts) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%d %B %Y") if ts else "-"


def _latin(text: str) -> str:
    # The core PDF fonts are Latin-1; replace what they cannot draw instead of failing.
    return (text or "").replace("×", "x").replace("€", "EUR ").replace("—", "-").encode("latin-1", "replace").decode("latin-1")


def invoice_pdf(inv: dict, customer: dict | None) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(f"Invoice {inv.get('number') or inv['id']}")
    pdf.set_creator("billing_app sandbox")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(0, 12, "Invoice", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    rows = [
        ("Invoice number", inv.get("number") or "(draft)"),
        ("Date of issue", _date(inv["status_transitions"].get("finalized_at") or inv["created"])),
        ("Status", inv["status"]),
        ("Billed to", (customer or {}).get("name") or (customer or {}).get("email") or inv["customer"]),
        ("Email", (customer or {}).get("email") or "-"),
    ]
    if inv["status_transitions"].get("paid_at"):
        rows.append(("Paid on", _date(inv["status_transitions"]["paid_at"])))
    for label, value in rows:
        pdf.cell(45, 6, _latin(label))
        pdf.cell(0, 6, _latin(str(value)), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(110, 7, "Description", border="B")
    pdf.cell(20, 7, "Qty", border="B", align="R")
    pdf.cell(0, 7, "Amount", border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for line in inv["lines"]["data"]:
        pdf.cell(110, 7, _latin(line["description"] or "")[:70])
        pdf.cell(20, 7, str(line["quantity"] or ""), align="R")
        pdf.cell(0, 7, _latin(money(line["amount"], line["currency"])), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    for label, amount in (("Total", inv["total"]), ("Amount paid", inv["amount_paid"]), ("Amount due", inv["amount_remaining"])):
        pdf.cell(130, 7, label, align="R")
        pdf.cell(0, 7, _latin(money(amount, inv["currency"])), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    pdf.set_font("Helvetica", "I", 8)
    pdf.cell(0, 5, "Issued by the offline Stripe sandbox - not a real invoice.", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
