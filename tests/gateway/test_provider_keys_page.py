"""The Provider keys page: what its table shows of each stored key."""


def test_the_update_time_says_it_is_utc(alice_client, alice, alice_key):
    key = alice.provider_keys.first()
    page = alice_client.get("/providers/").content.decode()
    assert ">Updated (UTC)</th>" in page
    assert f'<time datetime="{key.updated.isoformat()}">{key.updated:%Y-%m-%d %H:%M}</time>' in page
