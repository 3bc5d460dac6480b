import time
import uuid

from serverlord.checks import Check
from serverlord.schedules import Schedule


async def test_a_ping_to_a_new_check_answers_ok(live):
    check = Check(
        id=str(uuid.uuid4()),
        name="x",
        schedule=Schedule.simple(60),
        grace=60,
        created=time.time(),
    )
    await live.store.add_check(check)
    response = await live.client.get(f"/ping/{check.id}")
    assert response.status_code == 200
    assert response.text == "OK"
    stored = await live.store.get_check(check.id)
    assert stored is not None and stored.status == "up"
