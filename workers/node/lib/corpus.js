'use strict';
/**
 * The two small texts the built-in model is trained on (written for this
 * project, ASCII only).
 *
 * BASE is plain narrative about a river town; ADAPTER is a ship's log. An
 * adapter trained on the second text pulls the model toward nautical words
 * and log-book phrasing, so the fine-tuned view is measurably different from
 * the base on any prompt, which is what a differential test needs to see.
 */

const BASE = `The river ran slowly past the town in the late summer. In the town the
baker sold warm bread every morning, and the dog barked near the bridge when
the carts went by. The sky is often blue above the hills, and the fields turn
gold before the harvest. People walk to the market along the stone road and
talk about the weather, the price of flour and the news from the city.

The librarian kept a list of every book that came into the small library.
She opened the doors at nine and closed them at five, and in between she
read, sorted letters and helped the children find stories about dragons,
kings and far away islands. The school stood at the end of the street, and
the bell rang at noon so that everyone in the town knew the time.

In the evening the lamps were lit one by one. The miller walked home from
the mill, the farmer counted his sheep, and the old teacher wrote in his
notebook about the birds he had seen by the water. When it rained, the
river rose and the children watched it from the bridge, throwing small
sticks into the current and running to the other side to see them pass.

Winter came early that year. Snow covered the roofs and the roads, and the
town was quiet. The baker still sold bread, the dog still barked, and the
river still ran under the ice, slow and dark, toward the sea that nobody in
the town had ever seen.
`;

const ADAPTER = `Ship's log, day one. Wind from the north west, steady at twelve knots. The
sky is grey and the sea is long and heavy. Set the main sail at dawn and
held a course of two hundred and ten degrees. All hands well. The cook
served salt fish and hard bread, and the captain marked our position on the
chart at noon.

Day two. The wind backed to the west and freshened. Reefed the main sail and
the jib before the squall. Heavy rain from the south at four bells. The deck
was washed clean and the pumps were manned for an hour. Sighted a whale off
the port bow, and later a line of gulls that follows the fishing boats.

Day three. Calm at sunrise, then a light breeze from the south. Mended the
torn sail and coiled the ropes. The sea is blue and the swell is low. The
navigator took a sight of the sun and found us twelve miles north of the
mark. Course corrected. The crew sang while they worked the lines.

Day four. Land in sight at dawn: a low coast with white cliffs and a light
house on the point. Took soundings of nine fathoms, then seven. Dropped
anchor in the bay at the turn of the tide. The harbour master came out in a
small boat to meet the ship, and the captain went ashore with the papers.
`;

module.exports = { BASE, ADAPTER };
