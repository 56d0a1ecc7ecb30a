"""Friendly display names for agents, picked deterministically from their UUIDs.

``NICKNAMES`` holds popular first names given to babies in the United States in the 1920s
(boys first, then girls, roughly by popularity). ``nickname_for`` maps an agent id onto one of
them, so the same agent always gets the same nickname on every machine and in every process.
Within a town nicknames are unique: ``nickname_candidates`` lists the names to try in a
fixed order (the agent's own first, then the next ones in the list, then numbered ones), and
the agent service takes the first one no other agent of the town holds.
"""

from __future__ import annotations

import string
import zlib
from collections.abc import Iterator

# fmt: off
NICKNAMES: tuple[str, ...] = (
    "Robert", "John", "James", "William", "Charles", "George", "Joseph", "Richard", "Edward",
    "Donald", "Thomas", "Frank", "Harold", "Paul", "Raymond", "Walter", "Jack", "Henry", "Kenneth",
    "Arthur", "Albert", "David", "Harry", "Eugene", "Ralph", "Howard", "Carl", "Willie", "Louis",
    "Clarence", "Earl", "Roy", "Fred", "Joe", "Francis", "Lawrence", "Herbert", "Leonard", "Ernest",
    "Alfred", "Anthony", "Stanley", "Norman", "Gerald", "Daniel", "Samuel", "Bernard", "Billy",
    "Melvin", "Marvin", "Warren", "Michael", "Leroy", "Russell", "Leo", "Andrew", "Edwin", "Elmer",
    "Peter", "Floyd", "Lloyd", "Ray", "Frederick", "Theodore", "Clifford", "Vernon", "Herman",
    "Clyde", "Chester", "Philip", "Alvin", "Lester", "Wayne", "Vincent", "Gordon", "Leon", "Lewis",
    "Charlie", "Glenn", "Calvin", "Martin", "Milton", "Lee", "Jesse", "Dale", "Cecil", "Bill",
    "Harvey", "Roger", "Victor", "Benjamin", "Ronald", "Sam", "Allen", "Arnold", "Willard",
    "Gilbert", "Edgar", "Oscar", "Jim", "Johnnie", "Everett", "Jerome", "Tom", "Dean", "Jimmie",
    "Johnny", "Bobby", "Morris", "Leslie", "Hubert", "Wallace", "Irving", "Maurice", "Eddie",
    "Jacob", "Douglas", "Virgil", "Sidney", "Glen", "Homer", "Max", "Jerry", "Julius", "Otis",
    "Luther", "Wilbur", "Horace", "Curtis", "Hugh", "Nathan", "Franklin", "Jimmy", "Claude", "Ben",
    "Archie", "Rudolph", "Ira", "Manuel", "Jose", "Bruce", "Emil", "Tony", "Wesley", "Guy",
    "Sylvester", "Alex", "Orville", "Lyle", "Leland", "Bennie", "Dennis", "Stephen", "Roland",
    "Oliver", "Edmund", "Salvatore", "Mike", "Steve", "Irvin", "Merle", "Delbert", "Matthew",
    "Aaron", "Nicholas", "Lowell", "Clinton", "Dewey", "Ivan", "Karl", "Jay", "Louie", "August",
    "Wilfred", "Dan", "Patrick", "Perry", "Emmett", "Felix", "Forrest", "Lonnie", "Isaac", "Nelson",
    "Byron", "Ellis", "Marshall", "Angelo", "Mary", "Dorothy", "Helen", "Betty", "Margaret", "Ruth",
    "Virginia", "Doris", "Mildred", "Frances", "Elizabeth", "Evelyn", "Anna", "Marie", "Alice",
    "Jean", "Shirley", "Barbara", "Irene", "Marjorie", "Florence", "Lois", "Martha", "Rose",
    "Lillian", "Louise", "Catherine", "Ruby", "Eleanor", "Patricia", "Gladys", "Annie", "Josephine",
    "Thelma", "Edna", "Norma", "Pauline", "Lucille", "Edith", "Ethel", "Phyllis", "Gloria", "Grace",
    "Hazel", "Juanita", "Bernice", "Dolores", "Ann", "Elsie", "Anne", "Marion", "Esther",
    "Geraldine", "Rita", "Emma", "Beatrice", "Clara", "Gertrude", "Wanda", "Vivian", "Eva",
    "Kathryn", "June", "Julia", "Maxine", "Ida", "Jane", "Bertha", "Charlotte", "Agnes", "Laura",
    "Wilma", "Pearl", "Lorraine", "Marian", "Sarah", "Violet", "Myrtle", "Audrey", "Katherine",
    "Ella", "Bessie", "Jessie", "Vera", "Viola", "Lucy", "Loretta", "Alma", "Beverly", "Nellie",
    "Jeanne", "Minnie", "Genevieve", "Mabel", "Stella", "Rosemary", "Ellen", "Leona", "Marguerite",
    "Mattie", "Kathleen", "Dora", "Carol", "Opal", "Eileen", "Peggy", "Mae", "Velma", "Joan",
    "Harriet", "Sylvia", "Geneva", "Jennie", "Ada", "Inez", "Blanche", "Margie", "Marilyn", "Rosa",
    "Fannie", "Nancy", "Lena", "Lula", "Mamie", "Lillie", "Sara", "Cora", "Anita", "Emily", "Rosie",
    "Arlene", "Lola", "Jeanette", "Eunice", "Naomi", "Georgia", "Caroline", "Ollie", "Christine",
    "Olive", "Nora", "Verna", "Donna", "Muriel", "Sadie", "Maria", "Theresa", "Alberta", "Joyce",
    "Effie", "Flora", "Marcella", "Hattie", "Roberta", "Susie", "Estelle", "Della", "Fern",
    "Carrie", "Nina", "Victoria", "Imogene", "Iris", "Essie", "Hilda", "Janet", "Carmen", "Rachel",
    "Sally", "Mollie", "Irma", "Rosalie", "Regina", "Goldie", "Winifred", "Lottie", "Bonnie",
    "Gwendolyn", "Eloise", "Miriam", "Erma", "Lydia", "Elaine", "Teresa", "Delores", "Patsy",
    "Claire", "Nadine", "Constance", "Sue", "Maggie", "Ramona", "Colleen", "Lorene", "Mavis",
    "Lenora", "Hope", "Faye", "Annabelle", "Maude", "Henrietta", "Rebecca", "Sophie", "Nettie",
    "Clarice", "Beulah", "Ernestine", "Selma",
)
# fmt: on


def nickname_for(agent_id: str) -> str:
    """The nickname of ``agent_id``: its first 8 hex digits (hyphens ignored) modulo the list.

    Ids that do not start with 8 hex digits (not a UUID) fall back to a CRC-32 of the whole
    string, which is equally deterministic.
    """
    digits = agent_id.replace("-", "")[:8]
    if len(digits) == 8 and all(char in string.hexdigits for char in digits):
        number = int(digits, 16)
    else:
        number = zlib.crc32(agent_id.encode("utf-8"))
    return NICKNAMES[number % len(NICKNAMES)]


def nickname_candidates(agent_id: str) -> Iterator[str]:
    """Every nickname ``agent_id`` may get, in order: its own (:func:`nickname_for`), then
    the following names of the list (wrapping around), then the same with 2, 3, ...
    appended. Endless and deterministic: the same id always yields the same sequence."""
    start = NICKNAMES.index(nickname_for(agent_id))
    order = NICKNAMES[start:] + NICKNAMES[:start]
    yield from order
    number = 2
    while True:
        for name in order:
            yield f"{name}{number}"
        number += 1
