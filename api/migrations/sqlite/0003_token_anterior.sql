-- The token an automatic rotation replaced, accepted until the new one is first used.
ALTER TABLE "CONConnector" ADD COLUMN "CONTokenAnterior" TEXT;
