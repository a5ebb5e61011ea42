SHOPPER_HEADER = "shopper_ref,first_name,last_name,alternate_first_name,alternate_last_name,gender,email,title,mobile_phone,other_phone,address,address_2,address_3,address_4,city,state,zip_code,country_code,preferences,preferred_contact_channel,nationality,languages,email_contact,phone_call_contact\n"

def test_smoke(harness):
    harness.drop("SHOPPER_V3_Acme_202601010000.csv", SHOPPER_HEADER + "1,Marie,Curie,,,F,m@x.com,,+33612345678,,,,,,Paris,,,FR,,,,,TRUE,\n")
    f = harness.ingest("SHOPPER_V3_Acme_202601010000.csv")
    assert f["status"] == "applied" and f["inserted"] == 1
    harness.drop("SHOPPER_V3_Acme_202601010001.csv", SHOPPER_HEADER + "1,Marie,Curie,,,F,m@x.com,,+33612345678,,,,,,Lyon,,,FR,,,,,TRUE,\n")
    f = harness.ingest("SHOPPER_V3_Acme_202601010001.csv")
    assert f["updated"] == 1, f
    assert harness.rows("shoppers")[0]["city"] == "Lyon"
