/*  test_slot.c: zcq_crc16, zcq_slot_of and zcq_slot_map_even.

    The vectors are Redis Cluster's published ones (the cluster spec's
    CRC16 check value, the CLUSTER KEYSLOT examples and the hash tag
    rules), so a stream lands in the slot a Redis user expects.
*/
#include "testutil.h"
#include <stdlib.h>
#include <string.h>

static uint32_t
s_slot (const char *stream)
{
    return zcq_slot_of (stream, strlen (stream), ZCQ_CLUSTER_SLOTS_MAX);
}

//  The walk-through: a stream's slot, then its group in an even map.
static void
test_slot_walkthrough (void **state)
{
    uint32_t slot = s_slot ("account/{ann}-savings");
    assert_int_equal (slot, s_slot ("account/{ann}-checking"));
    zcq_slot_range_t ranges[3];
    zcq_slot_map_even (ZCQ_CLUSTER_SLOTS_MAX, 3, ranges);
    int owner = -1;
    for (int group = 0; group < 3; group++)
        if (slot >= ranges[group].first && slot <= ranges[group].last)
            owner = ranges[group].group;
    assert_in_range (owner, 0, 2);
}

static void
test_crc16_vectors (void **state)
{
    assert_int_equal (zcq_crc16 ("123456789", 9), 0x31C3);
    assert_int_equal (zcq_crc16 ("", 0), 0);
    //  the table against the polynomial, bit by bit
    for (int byte = 0; byte < 256; byte++) {
        uint16_t crc = (uint16_t) (byte << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t) (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
        uint8_t data = (uint8_t) byte;
        assert_int_equal (zcq_crc16 (&data, 1), crc);
    }
}

static void
test_keyslot_examples (void **state)
{
    //  CLUSTER KEYSLOT examples of the Redis documentation
    assert_int_equal (s_slot ("123456789"), 12739);
    assert_int_equal (s_slot ("somekey"), 11058);
    assert_int_equal (s_slot ("foo{hash_tag}"), 2515);
    assert_int_equal (s_slot ("foo"), 12182);
    //  the cluster spec's hash tag rules
    assert_int_equal (s_slot ("{user1000}.following"), s_slot ("{user1000}.followers"));
    assert_int_equal (s_slot ("{user1000}.following"), s_slot ("user1000"));
    assert_int_equal (s_slot ("foo{}{bar}"), zcq_crc16 ("foo{}{bar}", 10) % 16384);
    assert_int_equal (s_slot ("foo{{bar}}zap"), s_slot ("{bar"));
    assert_int_equal (s_slot ("foo{bar}{zap}"), s_slot ("bar"));
    //  an open brace alone, or a close brace before it, hashes whole
    assert_int_equal (s_slot ("foo{bar"), zcq_crc16 ("foo{bar", 7) % 16384);
    assert_int_equal (s_slot ("}foo{bar"), zcq_crc16 ("}foo{bar", 8) % 16384);
    assert_int_equal (s_slot ("{}"), zcq_crc16 ("{}", 2) % 16384);
    //  only len bytes count, whatever follows them
    assert_int_equal (zcq_slot_of ("{ab}cd", 3, 16384), zcq_crc16 ("{ab", 3) % 16384);
    //  other slot counts take the same CRC modulo
    assert_int_equal (zcq_slot_of ("123456789", 9, 1), 0);
    assert_int_equal (zcq_slot_of ("123456789", 9, 1000), 0x31C3 % 1000);
}

//  Every slot belongs to exactly one group, in order, for many (S, G).
static void
test_even_map_covers (void **state)
{
    static const uint32_t slot_counts[] = { 1, 2, 3, 7, 100, 1000, 16383, 16384 };
    zcq_slot_range_t *ranges = calloc (16384, sizeof (zcq_slot_range_t));
    uint8_t *seen = calloc (16384, 1);
    assert_non_null (ranges);
    assert_non_null (seen);
    for (size_t index = 0; index < sizeof slot_counts / sizeof slot_counts[0]; index++) {
        uint32_t slots = slot_counts[index];
        int group_counts[] = { 1, 2, 3, 5, (int) slots / 2, (int) slots - 1, (int) slots };
        for (size_t pick = 0; pick < sizeof group_counts / sizeof group_counts[0]; pick++) {
            int groups = group_counts[pick];
            if (groups < 1 || (uint32_t) groups > slots)
                continue;
            zcq_slot_map_even (slots, groups, ranges);
            memset (seen, 0, slots);
            for (int group = 0; group < groups; group++) {
                assert_int_equal (ranges[group].group, group);
                assert_true (ranges[group].first <= ranges[group].last);
                assert_true (ranges[group].last < slots);
                if (group < groups - 1)
                    assert_int_equal (ranges[group].last - ranges[group].first + 1,
                                      slots / (uint32_t) groups);
                for (uint32_t slot = ranges[group].first; slot <= ranges[group].last; slot++)
                    seen[slot]++;
            }
            for (uint32_t slot = 0; slot < slots; slot++)
                assert_int_equal (seen[slot], 1);
        }
    }
    //  the documented example: 16384 slots over 3 groups
    zcq_slot_map_even (16384, 3, ranges);
    assert_int_equal (ranges[0].last, 5460);
    assert_int_equal (ranges[1].first, 5461);
    assert_int_equal (ranges[2].first, 10922);
    assert_int_equal (ranges[2].last, 16383);
    free (ranges);
    free (seen);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_slot_walkthrough),
        cmocka_unit_test (test_crc16_vectors),
        cmocka_unit_test (test_keyslot_examples),
        cmocka_unit_test (test_even_map_covers),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
