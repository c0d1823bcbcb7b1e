// KeyIndex: the cache's open-addressing table from key to slot. Checked
// against std::map through random inserts and erases, with a table small
// enough that probe runs wrap around its end and overlap (the cases
// backward-shift deletion must get right).
#include "core/cache/key_index.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace berth {
namespace {

TEST(KeyIndex, MatchesAMapThroughRandomInsertsAndErases) {
  std::mt19937_64 rng(7);
  std::vector<ObjectRef> objects;
  for (int i = 0; i < 600; ++i) {
    objects.push_back(Object::Make("ns-" + std::to_string(i % 7), "o-" + std::to_string(i), 1, {}, ""));
  }
  KeyIndex index;
  std::map<std::string, uint32_t> model;
  for (int step = 0; step < 40000; ++step) {
    const uint32_t k = static_cast<uint32_t>(rng() % objects.size());
    const Object* o = objects[k].get();
    const std::string key(o->key());
    KeyIndex::Slot* slot = index.Find(key);
    ASSERT_EQ(slot != nullptr, model.count(key) == 1) << "step " << step;
    if (slot == nullptr) {
      index.Insert(o, k);
      model[key] = k;
    } else {
      ASSERT_EQ(slot->id, model[key]);
      ASSERT_EQ(slot->object, o);
      index.Erase(slot);
      model.erase(key);
    }
    ASSERT_EQ(index.size(), model.size());
    if (step % 997 == 0) {  // every key: present ones found with their id, absent ones not
      for (uint32_t i = 0; i < objects.size(); ++i) {
        const std::string kk(objects[i]->key());
        const KeyIndex::Slot* s = index.Find(kk);
        auto it = model.find(kk);
        ASSERT_EQ(s != nullptr, it != model.end()) << kk;
        if (s != nullptr) {
          EXPECT_EQ(s->id, it->second);
        }
      }
    }
  }
}

TEST(KeyIndex, AnEmptyTableFindsNothing) {
  KeyIndex index;
  EXPECT_EQ(index.Find(std::string_view("ns\0name", 7)), nullptr);
  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.capacity_bytes(), 0u);
}

}  // namespace
}  // namespace berth
