"""Sentence templates for the synthetic support tickets, one list per label.

Each template's wording carries keywords of its own label only (for example
"invoice", "refund" for billing; "error", "crash" for technical), so a keyword
classifier can score itself against the hidden ``true_label``.  Slots in braces
are filled from :data:`FILLERS`.  The greetings and sign-offs that wrap a body
are label-neutral.
"""

from __future__ import annotations

__all__ = ["FILLERS", "GREETINGS", "LABEL_WEIGHTS", "SIGNOFFS", "TEMPLATES"]

#: Share of each label in generated data (sums to 1).
LABEL_WEIGHTS: dict[str, float] = {
    "billing": 0.30,
    "technical": 0.35,
    "account": 0.20,
    "other": 0.15,
}

FILLERS: dict[str, tuple[str, ...]] = {
    "plan": ("Pro", "Team", "Basic", "Enterprise", "Starter"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"),
    "card": ("Visa", "Mastercard", "Amex", "PayPal", "debit card"),
    "amount": ("$9.99", "$19", "$49.00", "$120", "$249.50", "EUR 35"),
    "feature": ("the dashboard", "the mobile app", "file export", "the search page",
                "the calendar sync", "the reports screen", "the upload form"),
    "device": ("my iPhone", "my Android phone", "Windows 11", "my MacBook", "Chrome",
               "Firefox", "Safari"),
    "code": ("500", "503", "404", "ERR_TIMEOUT", "E1042", "0x80070005"),
    "thing": ("your podcast", "the new logo", "your blog post", "the community forum",
              "the webinar", "your conference talk"),
    "city": ("Berlin", "Austin", "Lisbon", "Toronto", "Singapore", "Nairobi"),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for my {plan} plan in {month}.",
        "Can I get a refund for the {amount} charge from {month}?",
        "Where can I download the invoice for {month}?",
        "My payment with {card} was declined, what should I do?",
        "Why did my bill go up to {amount} this month?",
        "Please cancel the renewal of my {plan} subscription before I am charged again.",
        "I need a VAT invoice for the {plan} plan for our bookkeeping.",
        "The {amount} refund you promised in {month} never arrived on my {card}.",
        "How do I change the {card} used for billing?",
        "Is there a discount if we prepay the {plan} plan for a year?",
        "I see an unknown charge of {amount} on my {card} statement.",
        "Can you send me a receipt for the {amount} payment?",
        "We were billed for the {plan} plan but we downgraded in {month}.",
        "Do you offer invoicing by bank transfer instead of {card}?",
        "Your pricing page says {amount} but I paid more, please explain the charge.",
    ),
    "technical": (
        "The app crashes every time I open {feature} on {device}.",
        "I get error {code} when I try to load {feature}.",
        "{feature} is very slow since the last update, pages take a minute to load.",
        "Sync between {device} and the web version is broken.",
        "Uploading a file fails with error {code}.",
        "The API returns {code} for every request since this morning.",
        "After the latest update {feature} shows a blank screen on {device}.",
        "Notifications stopped working on {device}, is there a bug?",
        "The export to CSV times out with error {code}.",
        "Webhooks are not firing anymore, our integration is down.",
        "The installer freezes at 90% on {device}.",
        "Is there a known outage? {feature} keeps showing error {code}.",
        "Charts in {feature} do not render in {device}, looks like a bug.",
        "The app keeps freezing when I attach a screenshot on {device}.",
        "Your server dropped the connection during the import, error {code}.",
    ),
    "account": (
        "I forgot my password and the reset email never arrives.",
        "How do I change the email address on my account?",
        "My account is locked after too many login attempts.",
        "I cannot log in since I enabled two-factor authentication on {device}.",
        "Please delete my account and all my personal data.",
        "How can I change my username?",
        "I lost my phone and cannot get the 2FA code to sign in.",
        "Can I merge my two accounts into one?",
        "Someone else may have accessed my account from {city}.",
        "How do I add a teammate as an admin on my account?",
        "The verification link for my new account has expired.",
        "I want to update the name on my profile.",
        "My login session expires every few minutes on {device}.",
        "How do I transfer account ownership to a colleague?",
        "I never received the account activation email.",
    ),
    "other": (
        "I loved {thing}, keep it up!",
        "Do you have an office in {city}? I would like to visit.",
        "Are you hiring? I am interested in careers at your company.",
        "I have a suggestion: a dark theme would be great.",
        "Can I interview someone from your team for a press article?",
        "Is there a partnership program for agencies in {city}?",
        "Where can I buy your merch, like the stickers from {thing}?",
        "I want to give some feedback about {thing}.",
        "When is your next meetup in {city}?",
        "Do you sponsor student hackathons?",
        "How do I unsubscribe from the newsletter?",
        "Could you recommend some books on project management?",
        "Just wanted to say thanks for {thing}.",
        "What are your opening hours during the holidays?",
        "Can I use your logo in a presentation about {thing}?",
    ),
}

GREETINGS: tuple[str, ...] = ("", "", "", "Hi, ", "Hello, ", "Hi team, ", "Good morning! ",
                              "Quick question: ", "Urgent: ", "Hey there. ")
SIGNOFFS: tuple[str, ...] = ("", "", "", " Thanks!", " Thank you.", " Please advise.",
                             " Any help appreciated.", " Regards, Sam", " Cheers.",
                             " This is the second time I write about it.")
